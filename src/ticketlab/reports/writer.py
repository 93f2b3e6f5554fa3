"""write_report: the documents of a report on any runs — report.md, report.json (and report.csv,
report.html on request) and the PNG plots — each stating where it came from."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ticketlab import stats
from ticketlab.files import write_json, write_text
from ticketlab.reports import labels as run_labels
from ticketlab.reports.document import Bullets, Code, Document, Image, Paragraph, Table, slug, to_html, to_markdown
from ticketlab.reports.loading import RunResults
from ticketlab.reports.origin import report_origin
from ticketlab.reports.plots import (band_legend, check_curve_levels, default_curve_levels, plot_curves,
                                     plot_vs_density)
from ticketlab.reports.tables import combined_rows, comparison_rows, comparisons, data_rows, level_rows

# The sections every report has, by anchor (report.html's ids; the browser test looks for each).
SECTIONS = ("provenance", "runs", "results", "comparisons", "plots", "curves", "configs")
KIND_WORDS = {"imp": "IMP levels", "demo": "IMP levels", "prune": "PaI/CTS ticket", "train": "dense network",
              "layers": "layer ticket", "filters": "filter ticket", "supertickets": "SuperTicket",
              "transfer": "transferred ticket"}


def _search_cost(run: RunResults) -> str | None:
    """What finding the sparsest level's ticket cost, mean over seeds (IMP: every earlier level's training)."""
    last = max(level["level"] for level in run.levels)
    costs = [r.get("search_cost") for records in run.per_seed.values() for r in records
             if r["level"] == last and r.get("search_cost")]
    if not costs:
        return None
    examples = [c.get("total_examples", c.get("train_examples")) for c in costs]
    seconds = [c.get("total_wall_time_seconds", c.get("wall_time_seconds")) for c in costs]
    if any(v is None for v in examples + seconds):
        return None
    return (f"Search cost of the sparsest ticket, mean over seeds (the trainings of every earlier level): "
            f"{sum(examples) / len(examples):,.0f} training examples, {sum(seconds) / len(seconds):.3g} s.")


def build_document(runs: list[RunResults], title: str, notes, origin: dict, plots: dict[str, Path],
                   curve_levels: list[list[int]], found: list[dict], extra_sections=()) -> Document:
    doc = Document(title)
    if notes:
        doc.add(*(Paragraph(n) for n in notes if n))
    doc.section("Provenance", "provenance")
    doc.add(Bullets([f"ticketlab {origin['ticketlab_version']}", f"written {origin['date']}",
                     f"command: `{origin['command']}`", f"machine: {origin['machine']}"]))

    doc.section("Runs", "runs")
    differing = run_labels.differing([r.config for r in runs])
    doc.add(Paragraph("Accuracies are test accuracies in percent; ± is one standard deviation over seeds (sample "
                      "std); differences are in percentage points (pp)."
                      + (f" The runs differ in: {', '.join(f'`{k}`' for k in differing)}." if len(runs) > 1 and differing
                         else "")))
    doc.add(Table(["run", "what", "method", "seeds", "run directory"],
                  [[r.label, KIND_WORDS.get(r.kind, r.kind), r.method, ", ".join(map(str, r.seeds)), f"`{r.run_dir}`"]
                   for r in runs]))
    for heading, anchor, blocks in extra_sections:
        doc.section(heading, anchor)
        doc.add(*blocks)

    doc.section("Results", "results")
    doc.add(Paragraph("Test accuracy at the end of training, mean ± std over seeds; early-stop it = iteration of "
                      "minimum validation loss; search examples = training examples spent finding the ticket "
                      "(dense training to k included)."))
    single = [run for run in runs if run.kind not in ("imp", "demo")]
    if single:
        headers, rows = combined_rows(single)
        doc.add(Table(headers, rows))
        doc.add(*(Paragraph(f"{run.label}: {note}") for run in single for note in run.notes))
    for run in runs:
        if run.kind not in ("imp", "demo"):
            continue
        doc.section(run.label, f"results-{slug(run.label)}", level=3)
        headers, rows = level_rows(run)
        doc.add(Paragraph(f"Seeds {', '.join(map(str, run.seeds))}."))
        doc.add(Table(headers, rows))
        doc.add(*(Paragraph(n) for n in run.notes))
        if cost := _search_cost(run):
            doc.add(Paragraph(cost))

    doc.section("Comparisons", "comparisons")
    if found:
        doc.add(Paragraph("Each ticket against each variant trained beside it (controls, sanity ablations, the dense "
                          "network), paired by seed. Claim: the ticket beats the variant (ticket − variant > 0). "
                          f"Rule: {stats.RULE}."))
        recorded = {c["rule"] for c in found if c["source"] == "recorded by sanity"}
        for rule in sorted(recorded):
            doc.add(Paragraph(f"Verdicts recorded by `sanity` follow its own rule: {rule}."))
        headers, rows = comparison_rows(found, len(runs) > 1)
        doc.add(Table(headers, rows))
        doc.add(Bullets([f"{c['run'] + ', ' if len(runs) > 1 else ''}{c['point']} vs {c['variant']}: "
                         f"{c['verdict']} — {c['reason']}" for c in found]))
    else:
        doc.add(Paragraph("No control, ablation or dense baseline was trained beside these tickets, so there is "
                          "nothing to compare them with."))

    doc.section("Plots", "plots")
    for key, alt in (("accuracy", "test accuracy vs percent of weights remaining"),
                     ("early_stop", "early-stopping iteration vs percent of weights remaining")):
        if key in plots:
            doc.add(Image(plots[key], f"{alt} ({band_legend([lv['seeds'] for r in runs for lv in r.levels])})"))
    if not any(key in plots for key in ("accuracy", "early_stop")):
        doc.add(Paragraph("No trained ticket to plot."))

    doc.section("Training curves", "curves")
    if "curves" in plots:
        chosen = "; ".join(f"{r.label}: levels {', '.join(map(str, levels))}" if r.kind in ("imp", "demo")
                           else r.label for r, levels in zip(runs, curve_levels))
        doc.add(Image(plots["curves"], f"test accuracy during training, mean over every seed with ± 1 std band ({chosen})"))
    else:
        doc.add(Paragraph("No training metrics recorded for these runs."))

    doc.section("Configs", "configs")
    for run in runs:
        identity = run.config.get("identity") or {}
        doc.add(Paragraph(f"{run.label} (`{run.run_dir.name}`), values that differ from the defaults:"))
        doc.add(Code([f"{k} = {v!r}" for k, v in sorted(identity.items())] or ["(all defaults)"]))
    return doc


def _csv_text(rows: list[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_report(runs: list[RunResults], out_dir: str | Path, title: str, curve_levels: list[int] | None = None,
                 notes=(), html: bool = False, csv: bool = False, labels: list[str] | None = None,
                 command: str | None = None, extra_sections=()) -> dict:
    """Write report.md and report.json (report.csv with `csv`, report.html with `html`) and the plots into
    `out_dir`; returns the paths written. `labels`: one name per run (default: from the config values
    that differ); `curve_levels`: IMP levels whose training curves are drawn (default: first, middle,
    last of each run); `command`: what to state as the report's command (default: this process's);
    `extra_sections`: (heading, anchor, blocks) placed after the runs (a sweep's table of its points)."""
    out_dir = Path(out_dir)
    run_labels.assign(runs, labels)
    run_labels.curve_names(runs)
    levels_by_run = []
    for run in runs:
        if curve_levels is not None and run.kind in ("imp", "demo"):
            check_curve_levels(run, curve_levels)
            levels_by_run.append(list(curve_levels))
        else:
            levels_by_run.append(default_curve_levels(run))
    origin = report_origin(command)
    out_dir.mkdir(parents=True, exist_ok=True)  # after every check: a refused report leaves nothing behind

    plots = {"accuracy": out_dir / "accuracy.png", "early_stop": out_dir / "early_stop.png",
             "curves": out_dir / "curves.png"}
    drawn = {"accuracy": plot_vs_density(runs, plots["accuracy"], title, "test_accuracy", "test accuracy (%)", 100,
                                         dense_line=True),
             "early_stop": plot_vs_density(runs, plots["early_stop"], title, "early_stop_iteration",
                                           "early-stopping iteration (min. validation loss)"),
             "curves": plot_curves(runs, levels_by_run, plots["curves"])}
    plots = {k: v for k, v in plots.items() if drawn[k]}

    found = [c for run in runs for c in comparisons(run)]
    doc = build_document(runs, title, list(notes), origin, plots, levels_by_run, found, extra_sections)
    write_text(out_dir / "report.md", to_markdown(doc))
    rows = data_rows(runs)
    write_json(out_dir / "report.json", {
        "title": title, "provenance": origin, "units": {"accuracy": "percent", "difference": "percentage points"},
        "runs": [{"label": r.label, "run_dir": str(r.run_dir), "kind": r.kind, "method": r.method, "seeds": r.seeds,
                  "identity": r.config.get("identity") or {}} for r in runs],
        "rows": rows, "comparisons": found, "sections": list(SECTIONS)})
    paths = {"report": str(out_dir / "report.md"), "json": str(out_dir / "report.json"),
             **{f"{k}_plot": str(v) for k, v in plots.items()}}
    if csv:
        write_text(out_dir / "report.csv", _csv_text(rows))
        paths["csv"] = str(out_dir / "report.csv")
    if html:
        write_text(out_dir / "report.html", to_html(doc))
        paths["html"] = str(out_dir / "report.html")
    return paths


def report_summary(paths: dict) -> str:
    """The command line's text: every file written."""
    return "\n".join(f"{name}: {path}" for name, path in paths.items())

