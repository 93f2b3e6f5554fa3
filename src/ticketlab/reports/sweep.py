"""A sweep's report: a table of its grid points (the options that vary, test accuracy in percent,
mean ± std over seeds, and failures), then the report of every run its finished points made, with
runs labelled by the config values that differ and a sweep's single-ticket cells joined into one
curve per method across densities."""

from __future__ import annotations

import json
from pathlib import Path

from ticketlab.files import write_json, write_text
from ticketlab.lth.aggregate import mean_std
from ticketlab.reports.document import Document, Paragraph, Table, to_markdown
from ticketlab.reports.loading import load_run, run_dirs_in, sweep_records, sweep_run_dirs
from ticketlab.reports.origin import report_origin
from ticketlab.reports.tables import percent
from ticketlab.reports.writer import write_report

SEED_KEYS = ("seed", "seeds")
ROW_KEYS = ("index", "ok", "test_accuracy", "run_dir", "error")


def point_table(summary: dict, made: dict[int, int]) -> Table:
    """One row per grid point (seeds pooled): the options that vary, test accuracy (%), seeds, failures.
    `made`: index -> how many runs the point made (a `pai` point makes one per method and density, whose
    accuracies the Results table gives one by one)."""
    rows = summary["rows"]
    keys = [k for k in (rows[0] if rows else {}) if k not in ROW_KEYS + SEED_KEYS]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(json.dumps(row.get(k), default=str) for k in keys), []).append(row)
    varying = [i for i, k in enumerate(keys) if len({g[i] for g in groups}) > 1] or list(range(len(keys)))
    table_rows = []
    for group, members in groups.items():
        accuracies = [m["test_accuracy"] for m in members if m["ok"] and m["test_accuracy"] is not None]
        mean, std = mean_std(accuracies)
        failed = [m.get("error") or "failed" for m in members if not m["ok"]]
        runs = max((made.get(m["index"], 1) for m in members if m["ok"]), default=1)
        accuracy = (f"{runs} runs: see Results" if runs > 1 else "not trained" if mean is None and not failed
                    else percent(mean, std if len(accuracies) > 1 else None))
        table_rows.append([str(json.loads(group[i])) for i in varying]
                          + [accuracy, str(len(accuracies)), "; ".join(failed) if failed else "ok"])
    return Table([keys[i] for i in varying] + ["test acc (%)", "seeds", "status"], table_rows)


def write_sweep_report(summary: dict, out_dir: Path) -> Path:
    """report.md (and report.json, plots) of a sweep in its folder; returns report.md's path."""
    out_dir = Path(out_dir)
    title = f"Sweep: {summary['runs']} {summary['command']} runs"
    intro = Paragraph(f"{summary['done']} done, {summary['failed']} failed. Test accuracy in percent, mean ± std "
                      "over seeds; the runs' own tables, comparisons and plots follow.")
    records = sweep_records(out_dir)
    made = {r["index"]: len(set(run_dirs_in(r.get("result")))) for r in records if r.get("ok")}
    points = ("Grid points", "points", [intro, point_table(summary, made)])
    runs = [load_run(folder) for folder in sweep_run_dirs(records)]
    if runs:
        return Path(write_report(runs, out_dir, title, extra_sections=[points])["report"])
    # no finished run to read back: the table of points alone, with where it came from
    doc = Document(title, [])
    doc.section(*points[:2])
    doc.add(*points[2])
    write_text(out_dir / "report.md", to_markdown(doc))
    write_json(out_dir / "report.json", {"title": title, "provenance": report_origin(), "rows": summary["rows"]})
    return out_dir / "report.md"
