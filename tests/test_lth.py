"""Issue-3 capabilities on tiny data: controls, rewinding variants, replicates, stability, reports."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_IMP
from ticketlab.ticket import load_ticket


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    """A finished 2-level IMP run with two seeds (trained once for the module)."""
    from ticketlab.cli import main
    runs = tmp_path_factory.mktemp("runs")
    assert main(["imp", *TINY_IMP, "--runs-dir", str(runs), "--seeds", "0,1", "--workers", "1", "--json"]) == 0
    return next(runs.glob("imp-*"))


def test_shuffle_control_keeps_per_layer_counts_and_changes_positions(cli, imp_run):
    res = cli("control", imp_run, "--kind", "shuffle-layerwise", "--levels", "1-2", "--seeds", "0", "--json", "--quiet")
    assert res.code == 0, res.err
    rows = res.json()["controls"]
    assert [r["level"] for r in rows] == [1, 2]
    for row in rows:
        ticket = load_ticket(imp_run / "seed-0" / f"level-{row['level']}" / "ticket.safetensors")
        control = load_ticket(row["ticket"])
        for name in ticket.mask.names():
            assert int(control.mask[name].sum()) == int(ticket.mask[name].sum())
        assert not control.mask.equals(ticket.mask)
        assert 0 <= row["test_accuracy"] <= 1


def test_random_global_control_keeps_the_total(cli, imp_run):
    row = cli("control", imp_run / "seed-1", "--kind", "random-global", "--levels", "2", "--json", "--quiet").json()["controls"][0]
    assert row["seed"] == 1
    ticket = load_ticket(imp_run / "seed-1" / "level-2" / "ticket.safetensors")
    control = load_ticket(row["ticket"])
    assert control.mask.num_kept() == ticket.mask.num_kept()
    assert control.mask.layer_densities() != ticket.mask.layer_densities()


def test_sign_preserving_reinit_keeps_signs_and_reinit_is_reproducible(cli, imp_run, tmp_path):
    row = cli("control", imp_run, "--kind", "random-reinit-sign", "--levels", "1", "--seeds", "0", "--json", "--quiet").json()["controls"][0]
    control = load_ticket(row["ticket"])
    theta_k = load_file(str(imp_run / "seed-0" / "level-0" / "rewind.safetensors"))
    for name in control.mask.names():
        kept = control.mask[name]
        assert torch.equal(torch.sign(control.init_state[name][kept]), torch.sign(theta_k[name][kept]))
        assert not torch.equal(control.init_state[name][kept], theta_k[name][kept])  # fresh magnitudes

    first = cli("control", imp_run, "--kind", "random-reinit", "--levels", "1", "--seeds", "0", "--json", "--quiet").json()
    path = Path(first["controls"][0]["ticket"])
    weights = load_ticket(path).init_state
    # Recompute from scratch in a copy of the run: same seed, same weights and same result.
    import shutil
    copy = tmp_path / imp_run.name
    shutil.copytree(imp_run, copy)
    shutil.rmtree(copy / "seed-0" / "level-1" / "control-random-reinit")
    again = cli("control", copy, "--kind", "random-reinit", "--levels", "1", "--seeds", "0", "--json", "--quiet").json()
    redo = load_ticket(again["controls"][0]["ticket"]).init_state
    assert all(torch.equal(weights[k], redo[k]) for k in weights)
    assert again["controls"][0]["test_accuracy"] == first["controls"][0]["test_accuracy"]


def test_control_rejects_levels_and_kinds_the_run_lacks(cli, imp_run):
    res = cli("control", imp_run, "--kind", "random-reinit", "--levels", "0-9")
    assert res.code == 2 and "not finished" in res.err and len(res.err.strip().splitlines()) == 1
    res = cli("control", imp_run, "--kind", "shuffle")
    assert res.code == 2 and "random-reinit" in res.err


def test_replicates_aggregate_mean_and_std(imp_run, cli):
    res = cli("imp", *TINY_IMP, "--runs-dir", imp_run.parent, "--seeds", "0,1", "--json")
    result = res.json()
    assert result["seeds"] == [0, 1]
    for level in result["levels"]:
        a, b = (json.loads((imp_run / f"seed-{s}" / f"level-{level['level']}" / "summary.json").read_text())["test_accuracy"]
                for s in (0, 1))
        assert level["test_accuracy"] == pytest.approx((a + b) / 2)
        assert level["test_accuracy_std"] == pytest.approx(abs(a - b) / 2 ** 0.5)
        assert level["seeds"] == 2 and len(level["tickets"]) == 2


def test_parallel_seeds_match_sequential(cli, tmp_path, imp_run):
    parallel = cli("imp", *TINY_IMP, "--runs-dir", tmp_path, "--seeds", "0,1", "--workers", "2", "--json").json()
    for level in parallel["levels"]:
        for seed, ticket in zip((0, 1), level["tickets"]):
            reference = load_ticket(imp_run / f"seed-{seed}" / f"level-{level['level']}" / "ticket.safetensors")
            assert load_ticket(ticket).mask.equals(reference.mask)


def test_learning_rate_rewinding_and_finetuning(cli, tmp_path):
    common = [*TINY_IMP, "--levels", "1", "--milestones", "30it", "--rewind-step", "10it", "--json"]
    lrr = cli("imp", *common, "--runs-dir", tmp_path, "--retrain", "lr-rewind").json()
    level_dir = Path(lrr["run_dir"]) / "seed-0"
    records = [json.loads(line) for line in (level_dir / "level-1" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["iteration"] == 10 and records[0]["lr"] == pytest.approx(0.1)  # schedule restarts at k
    assert records[-1]["lr"] == pytest.approx(0.01)
    # lr rewinding starts from the level-0 final weights (masked), not from θ_k
    ticket = load_ticket(lrr["levels"][1]["ticket"])
    final0 = load_ticket(lrr["levels"][0]["ticket"]).trained_state
    name = ticket.mask.names()[0]
    assert torch.equal(ticket.init_state[name], final0[name] * ticket.mask[name])
    assert ticket.provenance.method == "lr-rewind"

    ft = cli("imp", *common, "--runs-dir", tmp_path, "--retrain", "finetune").json()
    records = [json.loads(line) for line in (Path(ft["run_dir"]) / "seed-0" / "level-1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == pytest.approx([0.01] * len(records))  # the final lr throughout


def test_rewinding_the_optimizer_state(cli, tmp_path):
    args = [*TINY_IMP, "--levels", "1", "--optimizer", "sgd", "--momentum", "0.9", "--rewind-step", "10it", "--json"]
    fresh = cli("imp", *args, "--runs-dir", tmp_path / "a").json()
    rewound = cli("imp", *args, "--runs-dir", tmp_path / "b", "--rewind-optimizer").json()
    assert fresh["levels"][0]["test_accuracy"] == rewound["levels"][0]["test_accuracy"]  # level 0 is the same
    assert fresh["levels"][1]["test_accuracy"] != rewound["levels"][1]["test_accuracy"] or \
        fresh["levels"][1]["test_loss"] != rewound["levels"][1]["test_loss"]
    bad = cli("imp", *args, "--runs-dir", tmp_path / "c", "--rewind-optimizer", "--retrain", "finetune")
    assert bad.code == 2 and "--rewind-optimizer" in bad.err


def test_stability_barrier_is_zero_for_the_same_data_order(imp_run, tmp_path):
    from ticketlab.lth.stability import run_stability
    ticket = imp_run / "seed-0" / "level-1" / "ticket.safetensors"
    same = run_stability(str(ticket), None, str(tmp_path), seed=0, points=5, data_root=None, quiet=True,
                         same_data_order=True)
    assert same["barrier"] == pytest.approx(0.0, abs=1e-12)
    assert len(same["test_errors"]) == 5 and len(set(same["test_errors"])) == 1


def test_stability_command_from_a_later_rewind_step(cli, imp_run, tmp_path):
    ticket = imp_run / "seed-0" / "level-0" / "ticket.safetensors"
    res = cli("stability", ticket, "--rewind-step", "20it", "--points", "5", "--runs-dir", tmp_path, "--json", "--quiet")
    assert res.code == 0, res.err
    result = res.json()
    errors = result["test_errors"]
    assert result["rewind_step"] == 20 and len(errors) == 5
    assert result["barrier"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)
    assert errors[0] != errors[-1] or result["barrier"] != 0  # the two copies really differ
    assert Path(result["plot"]).read_bytes()[:4] == b"\x89PNG"
    assert (Path(result["run_dir"]) / "to-k" / "summary.json").exists()
    bad = cli("stability", ticket, "--rewind-step", "999it", "--runs-dir", tmp_path)
    assert bad.code == 2 and "--rewind-step" in bad.err


def test_report_combines_runs_and_controls(cli, imp_run, tmp_path):
    cli("control", imp_run, "--kind", "random-reinit", "--levels", "all", "--quiet")
    res = cli("report", imp_run, "--out", tmp_path / "report", "--html", "--curves", "0,2", "--json")
    assert res.code == 0, res.err
    result = res.json()
    text = Path(result["report"]).read_text()
    results = text.split("## Results")[1].split("## Comparisons")[0]
    table = [line for line in results.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3  # header and levels 0, 1, 2
    assert "random-reinit acc" in table[0] and "seeds" in table[0]
    assert all(line.rstrip(" |").endswith("2") for line in table[1:])  # both seeds in every row
    assert " ± " in table[1]
    for key in ("accuracy_plot", "early_stop_plot", "curves_plot"):
        data = Path(result[key]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 3000
    html = Path(result["html"]).read_text()
    assert html.count("<img") == 3 and "<table>" in html
    assert cli("report", tmp_path, "--out", tmp_path / "r2").code == 2
