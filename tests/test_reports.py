"""Reports: runs of every kind read back, labels, percent tables, paired comparisons, provenance, CSV and
JSON, plots that break at missing points, and the HTML page rendered in headless Chromium."""

import contextlib
import csv
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PilImage

from ticketlab import __version__
from ticketlab.cli import main
from ticketlab.figures import spaced_ticks, tick_label
from ticketlab.reports.document import Document, Paragraph, Table, to_html, to_markdown
from ticketlab.reports.labels import automatic, parse_labels
from ticketlab.reports.loading import load_run, load_runs
from ticketlab.reports.plots import _points
from ticketlab.reports.writer import SECTIONS, write_report

TINY = ["--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32_16", "--batch-size", "32",
        "--eval-every", "20it", "--quiet"]


def run_json(*args) -> dict:
    """Run a command in this process (module fixtures cannot use capsys) and return its --json result."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main([str(a) for a in args] + ["--json"]) == 0
    return json.loads(buffer.getvalue())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two IMP runs that differ only in training length (one with a control), a trained PaI ticket and
    an untrained one: a few seconds on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("report-runs")
    common = [*TINY, "--runs-dir", folder]
    found = {
        "short": run_json("imp", *common, "--steps", "40it", "--levels", "1", "--seeds", "0,1", "--workers", "1",
                          "--controls", "random-reinit")["run_dir"],
        "long": run_json("imp", *common, "--steps", "60it", "--levels", "1", "--seeds", "0,1", "--workers", "1")["run_dir"],
        "pai": run_json("pai", *common, "--steps", "40it", "--methods", "snip", "--densities", "0.3",
                        "--workers", "1")["results"][0]["run_dir"],
        "prune": str(Path(run_json("prune", *common, "--steps", "40it", "--method", "random",
                                   "--density", "0.2")["run_dir"]).parent),
    }
    torch.set_num_threads(threads)
    return found


def test_labelled_runs_give_plots_a_csv_and_a_report_with_provenance(cli, runs, tmp_path):
    out = tmp_path / "report"
    res = cli("report", runs["short"], runs["long"], "--label", "short,long", "--csv", "--out", out, "--json")
    assert res.code == 0, res.err
    paths = res.json()
    text = (out / "report.md").read_text()
    # provenance: version, date, the command, the machine
    assert f"ticketlab {__version__}" in text and re.search(r"written \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)
    assert f"command: `ticketlab report {runs['short']} {runs['long']} --out {out} --label short,long --csv" in text
    assert "machine: " in text and "torch " in text
    assert "### short" in text and "### long" in text and "| short | IMP levels |" in text
    # tables in percent: the stored fraction appears as percent with two decimals
    stored = load_run(runs["short"])
    level1 = next(r for r in stored.levels if r["level"] == 1)
    assert f"{100 * level1['test_accuracy']:.2f} ± {100 * level1['test_accuracy_std']:.2f}" in text
    with open(paths["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert {r["run"] for r in rows} == {"short", "long"}
    ticket_row = next(r for r in rows if r["run"] == "short" and r["level"] == "1" and r["series"] == "ticket")
    assert float(ticket_row["test_accuracy_pct"]) == pytest.approx(100 * level1["test_accuracy"], abs=1e-4)
    assert any(r["series"] == "random-reinit" for r in rows)
    data = json.loads(Path(paths["json"]).read_text())
    assert [r["label"] for r in data["runs"]] == ["short", "long"] and len(data["rows"]) == len(rows)
    # the control is compared paired by seed, with a three-valued verdict
    comparison = next(c for c in data["comparisons"] if c["level"] == 1)
    assert comparison["verdict"] in ("supported", "not supported", "inconclusive") and comparison["n"] == 2
    ticket, control = stored.per_seed_values(1, "test_accuracy"), stored.per_seed_values(1, "control_random-reinit_test_accuracy")
    assert comparison["differences_pp"] == {str(s): pytest.approx(100 * (ticket[s] - control[s])) for s in ticket}
    for key in ("accuracy_plot", "early_stop_plot", "curves_plot"):
        assert Path(paths[key]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_automatic_labels_say_what_differs(runs):
    loaded = load_runs([runs["short"], runs["long"]])
    labels = automatic([r.config for r in loaded], [r.method for r in loaded], [r.run_dir.name for r in loaded])
    assert labels == ["steps 40it", "steps 60it"]
    assert automatic([loaded[0].config], ["imp"], ["x"]) == ["imp"]  # one run: its method


def test_a_wrong_label_count_is_one_line_and_writes_nothing(cli, runs, tmp_path):
    res = cli("report", runs["short"], runs["long"], "--label", "only-one", "--out", tmp_path / "r")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1 and "--label" in res.err
    assert not (tmp_path / "r").exists()
    with pytest.raises(Exception, match="differ"):
        parse_labels("a,a")


def test_report_reads_a_prune_run_and_a_pai_run(cli, runs, tmp_path):
    res = cli("report", runs["prune"], "--out", tmp_path / "untrained", "--json")
    assert res.code == 0, res.err
    text = (tmp_path / "untrained" / "report.md").read_text()
    assert "No ticket of this run is trained yet" in text and "random" in text and "No trained ticket to plot" in text
    res = cli("report", runs["pai"], runs["prune"], "--out", tmp_path / "both", "--csv", "--json")
    assert res.code == 0, res.err
    trained = load_run(runs["pai"])
    with open(res.json()["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    snip = next(r for r in rows if r["method"] == "snip")
    assert float(snip["test_accuracy_pct"]) == pytest.approx(100 * trained.levels[0]["test_accuracy"], abs=1e-4)
    assert float(snip["percent_remaining"]) == pytest.approx(30, abs=0.5)


def test_every_run_gets_training_curves(runs, tmp_path):
    loaded = load_runs([runs["short"], runs["long"]])
    paths = write_report(loaded, tmp_path, "curves")
    curves = PilImage.open(paths["curves_plot"])
    assert curves.size[0] > curves.size[1]  # two panels side by side: one per run


def test_a_missing_point_breaks_the_line():
    class Run:
        levels = [{"level": 0, "percent_remaining": 100.0, "control_x_test_accuracy": 0.5, "seeds": 2},
                  {"level": 1, "percent_remaining": 80.0, "control_x_test_accuracy": None, "seeds": 2},
                  {"level": 2, "percent_remaining": 64.0, "control_x_test_accuracy": 0.4, "seeds": 2}]
    xs, ys, _, counts = _points([Run()], "control_x_test_accuracy", 100)
    assert xs == [100.0, 80.0, 64.0] and ys[0] == 50 and math.isnan(ys[1]) and ys[2] == 40 and counts[1] == 0


def test_density_ticks_never_crowd():
    many = [100 * 0.8 ** i for i in range(30)]
    ticks = spaced_ticks(many)
    span = math.log(max(many) / min(many))
    assert ticks[0] == max(many) and all(math.log(a / b) >= 0.07 * span - 1e-9 for a, b in zip(ticks, ticks[1:]))
    assert spaced_ticks([100, 80, 64]) == [100, 80, 64]
    assert [tick_label(v) for v in (100, 51.2, 0.262, 4.0)] == ["100", "51.2", "0.262", "4"]


def test_html_renders_code_spans_and_keeps_numbers_on_one_line():
    doc = Document("t")
    doc.section("Runs", "runs")
    doc.add(Paragraph("run `ticketlab imp` <now>, **then** see [the docs](reports.md)"),
            Table(["run", "acc (%)"], [["a", "82.86 ± 0.05"]]))
    page = to_html(doc)
    assert "<code>ticketlab imp</code>" in page and "`" not in page and "&lt;now&gt;" in page
    assert "<strong>then</strong>" in page and '<a href="reports.md">the docs</a>' in page and "**" not in page
    assert 'id="runs"' in page and 'href="#runs"' in page
    assert re.search(r"td\{[^}]*white-space:nowrap", page) and '<td class="num">82.86 ± 0.05</td>' in page
    assert "| a | 82.86 ± 0.05 |" in to_markdown(doc)


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="headless Chromium not installed (make test installs it as root)")
def test_the_html_report_renders_in_headless_chromium(cli, runs, tmp_path):
    out = tmp_path / "page"
    res = cli("report", runs["short"], runs["long"], runs["pai"], "--html", "--out", out, "--json")
    assert res.code == 0, res.err
    page = Path(res.json()["html"])
    assert "src=\"data:image/png;base64," in page.read_text() and "<link" not in page.read_text()  # self-contained
    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "page.png"
    subprocess.run([*browser, "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(PilImage.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1280) and pixels.std() > 10  # not a blank page
    assert (pixels < 128).mean() > 0.005  # dark text and lines drawn
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    ids = set(re.findall(r'id="([^"]+)"', dom))
    assert set(SECTIONS) <= ids and 'id="points"' not in dom
    assert dom.count("<img") == 3 and dom.count("<table") >= 4


def fake_run(folder: Path, kind: str, result: dict, summary: dict | None = None) -> Path:
    """A run folder as the layers / supertickets jobs leave it (result.json and summary.json per seed)."""
    (folder / "seed-0").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": kind, "config": {"model": {"model": "m"}}, "identity": {}}))
    (folder / "seed-0" / "result.json").write_text(json.dumps(result))
    if summary:
        (folder / "seed-0" / "summary.json").write_text(json.dumps(summary))
    return folder


def test_layer_tickets_and_supertickets_are_read_with_their_baselines(tmp_path):
    layers = fake_run(tmp_path / "layers-x", "layers",
                      {"test_accuracy": 0.8, "early_stop_test_accuracy": 0.79, "dense_test_accuracy": 0.85,
                       "ticket_costs": {"parameters": 600, "flops": 1000}, "dense_costs": {"parameters": 800, "flops": 2000},
                       "method": "layers-grasp"}, {"early_stop_iteration": 40})
    run = load_run(layers)
    assert run.levels[0]["percent_remaining"] == pytest.approx(75.0) and run.levels[0]["flops"] == 1000
    assert run.control_kinds() == ["dense"] and run.levels[0]["control_dense_test_accuracy"] == 0.85
    found = fake_run(tmp_path / "supertickets-y", "supertickets",
                     {"density": 0.3, "found": {"test_accuracy": 0.7, "flops": 500}, "search_examples": 1200,
                      "method": "supertickets"})
    paths = write_report([run, load_run(found)], tmp_path / "out", "structured", csv=True)
    with open(paths["csv"]) as handle:
        rows = {(r["run"], r["series"]): r for r in csv.DictReader(handle)}
    assert float(rows[("layers", "dense")]["test_accuracy_pct"]) == pytest.approx(85.0)
    assert float(rows[("supertickets", "ticket")]["percent_remaining"]) == pytest.approx(30.0)
    text = Path(paths["report"]).read_text()
    assert "1,200" in text and "dense (baseline)" in text  # the search cost, and the ticket vs its dense network
