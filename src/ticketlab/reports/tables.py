"""A run's numbers as tables, in percent throughout (accuracy in %, differences in percentage points):
the per-level table, paired comparisons of the ticket with each variant trained beside it (with the
three-valued verdicts of ticketlab.stats), and the rows of report.csv / report.json."""

from __future__ import annotations

from ticketlab import stats
from ticketlab.errors import TicketlabError
from ticketlab.reports.loading import RunResults
from ticketlab.ticket import read_metadata

# What the run kinds call the variants trained beside their tickets.
VARIANT_WORD = {"imp": "control", "demo": "control", "prune": "ablation", "layers": "baseline", "filters": "baseline"}


def percent(mean, std=None, digits: int = 2) -> str:
    """A fraction as percent, mean ± std: 0.82861, 0.0005 -> '82.86 ± 0.05'; None -> '—'."""
    if mean is None:
        return "—"
    text = f"{100 * mean:.{digits}f}"
    return text if std is None else f"{text} ± {100 * std:.{digits}f}"


def count(mean, std=None) -> str:
    if mean is None:
        return "—"
    return f"{mean:,.0f}" if std is None else f"{mean:,.0f} ± {std:,.0f}"


def first_column(run: RunResults) -> str:
    return "level" if run.kind in ("imp", "demo") else "ticket"


def row_name(run: RunResults, level: dict) -> str:
    return str(level["level"]) if run.kind in ("imp", "demo") else (level.get("method") or run.method)


def point_name(run: RunResults, level: dict) -> str:
    """A level or ticket in words: `level 2`, `snip`."""
    return f"level {level['level']}" if run.kind in ("imp", "demo") else row_name(run, level)


def level_rows(run: RunResults) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a run's table: one row per level (or ticket), accuracies in %."""
    kinds = run.control_kinds()
    headers = [first_column(run), "% weights", "FLOPs/example", "test acc (%)"] + [f"{k} acc (%)" for k in kinds]
    headers += ["early-stop it", "acc @ early stop (%)"] + [f"{k} early-stop it" for k in kinds] + ["seeds"]
    rows = []
    for level in run.levels:
        # one seed has no spread to show: its std (0) is left out rather than printed as ± 0.00
        r = level if level["seeds"] > 1 else {k: v for k, v in level.items() if not k.endswith("_std")}
        row = [row_name(run, r), f"{r['percent_remaining']:.2f}",
               f"{r['flops']:,}" if r.get("flops") is not None else "—",
               percent(r.get("test_accuracy"), r.get("test_accuracy_std"))]
        row += [percent(r.get(f"control_{k}_test_accuracy"), r.get(f"control_{k}_test_accuracy_std")) for k in kinds]
        row += [count(r.get("early_stop_iteration"), r.get("early_stop_iteration_std")),
                percent(r.get("early_stop_test_accuracy"), r.get("early_stop_test_accuracy_std"))]
        row += [count(r.get(f"control_{k}_early_stop_iteration"), r.get(f"control_{k}_early_stop_iteration_std"))
                for k in kinds]
        row.append(str(r["seeds"]))
        rows.append(row)
    return headers, rows


def search_examples(level: dict) -> str:
    cost = level.get("search_cost") or {}
    examples = cost.get("total_examples", cost.get("train_examples"))
    return "—" if examples is None else f"{examples:,.0f}"


def combined_rows(runs: list[RunResults]) -> tuple[list[str], list[list[str]]]:
    """One table for runs of one ticket each (a sweep's cells, PaI and layer tickets): a row per run."""
    kinds = sorted({k for run in runs for k in run.control_kinds()})
    headers = ["run", "method", "% weights", "FLOPs/example", "test acc (%)"] + [f"{k} acc (%)" for k in kinds]
    headers += ["early-stop it", "acc @ early stop (%)", "search examples", "seeds"]
    rows = []
    for run in runs:
        for level in run.levels:
            r = level if level["seeds"] > 1 else {k: v for k, v in level.items() if not k.endswith("_std")}
            rows.append([run.label, row_name(run, r), f"{r['percent_remaining']:.2f}",
                         f"{r['flops']:,}" if r.get("flops") is not None else "—",
                         percent(r.get("test_accuracy"), r.get("test_accuracy_std"))]
                        + [percent(r.get(f"control_{k}_test_accuracy"), r.get(f"control_{k}_test_accuracy_std"))
                           for k in kinds]
                        + [count(r.get("early_stop_iteration"), r.get("early_stop_iteration_std")),
                           percent(r.get("early_stop_test_accuracy"), r.get("early_stop_test_accuracy_std")),
                           search_examples(r), str(r["seeds"])])
    return headers, rows


def level_table(run: RunResults, markdown: bool = False) -> str:
    """The run's table as aligned text (the command line's output), or as Markdown."""
    headers, rows = level_rows(run)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    return "\n".join(lines + ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows])


# ---- paired comparisons --------------------------------------------------------------------------

def chance_accuracy(run: RunResults) -> float | None:
    """1 / classes, from the first ticket's architecture (None when no ticket says)."""
    for level in run.levels:
        for ticket in level.get("tickets") or []:
            if ticket:
                try:
                    classes = read_metadata(ticket).get("architecture", {}).get("num_classes")
                except (TicketlabError, OSError):  # a ticket the report cannot read only leaves chance unknown
                    classes = None
                return 1 / classes if classes else None
    return None


def recorded_sanity(run: RunResults) -> dict[str, dict]:
    """Variant -> the verdict row `sanity` stored in the run (the latest file with the most seeds)."""
    rows: dict[str, dict] = {}
    for result in sorted(run.sanity, key=lambda r: len(r.get("seeds") or [])):
        for row in result.get("rows") or []:
            if row.get("verdict") in stats.VERDICTS:
                rows[row["variant"]] = {**row, "rule": result.get("rule")}
    return rows


def comparisons(run: RunResults) -> list[dict]:
    """The ticket against every variant at every level, paired by seed: "the ticket beats the variant"
    (ticket − variant > 0), decided by stats.verdict with the ticket required to have trained. A
    `sanity` run's stored verdicts (which add its tolerance) are shown as recorded."""
    chance = chance_accuracy(run)
    recorded = recorded_sanity(run) if run.kind == "prune" else {}
    out = []
    for level in run.levels:
        ticket = run.per_seed_values(level["level"], "test_accuracy")
        for kind in run.control_kinds():
            variant = run.per_seed_values(level["level"], f"control_{kind}_test_accuracy")
            if not ticket or not variant:
                continue
            comparison = stats.paired(ticket, variant)
            if kind in recorded:
                row = recorded[kind]
                judged = {"verdict": row["verdict"], "reason": row.get("reason", ""), "rule": row.get("rule") or ""}
                source = "recorded by sanity"
            else:
                decided = stats.verdict(comparison, 0.0, chance=chance, must_train="a")
                reason = decided.reason.replace("a did not train", "the ticket did not train")
                judged = {"verdict": decided.label, "reason": reason, "rule": stats.RULE}
                source = "computed"
            ci = comparison.ci
            out.append({"run": run.label, "level": level["level"], "name": row_name(run, level),
                        "point": point_name(run, level),
                        "percent_remaining": level["percent_remaining"], "variant": kind,
                        "word": VARIANT_WORD.get(run.kind, "variant"), "n": comparison.n,
                        "ticket_pct": _pct(comparison.mean_a), "variant_pct": _pct(comparison.mean_b),
                        "difference_pp": _pct(comparison.mean_difference),
                        "ci_low_pp": None if ci is None else _pct(ci[0]), "ci_high_pp": None if ci is None else _pct(ci[1]),
                        "p_value": comparison.p_value,
                        "differences_pp": {str(s): _pct(d) for s, d in zip(comparison.seeds, comparison.differences)},
                        "source": source, **judged})
    return out


def _pct(value):
    return None if value is None else 100 * value


def comparison_rows(found: list[dict], many_runs: bool) -> tuple[list[str], list[list[str]]]:
    point = "level" if all(c["name"].isdigit() for c in found) else "ticket" if not any(
        c["name"].isdigit() for c in found) else "level / ticket"
    headers = (["run"] if many_runs else []) + [point, "% weights", "ticket vs", "ticket (%)", "other (%)",
                                                "difference (pp)", "95% CI (pp)", "p", "per seed (pp)", "seeds",
                                                "verdict"]
    rows = []
    for c in found:
        ci = "—" if c["ci_low_pp"] is None else f"[{c['ci_low_pp']:+.2f}, {c['ci_high_pp']:+.2f}]"
        per_seed = ", ".join(f"{d:+.2f}" for d in c["differences_pp"].values())
        rows.append(([c["run"]] if many_runs else []) + [
            c["name"], f"{c['percent_remaining']:.2f}", f"{c['variant']} ({c['word']})", f"{c['ticket_pct']:.2f}",
            f"{c['variant_pct']:.2f}", f"{c['difference_pp']:+.2f}", ci,
            "—" if c["p_value"] is None else f"{c['p_value']:.3g}", per_seed, str(c["n"]), c["verdict"]])
    return headers, rows


# ---- machine-readable rows ----------------------------------------------------------------------

CSV_VALUES = (("test_accuracy", "test_accuracy_pct", 100), ("early_stop_test_accuracy", "early_stop_test_accuracy_pct", 100),
              ("early_stop_iteration", "early_stop_iteration", 1))


def data_rows(runs: list[RunResults]) -> list[dict]:
    """One row per run, level and series (the ticket, then each variant): mean and std over seeds,
    accuracies in percent. These are report.csv's rows and report.json's `rows`."""
    rows = []
    for run in runs:
        for level in run.levels:
            for series in ["ticket", *run.control_kinds()]:
                prefix = "" if series == "ticket" else f"control_{series}_"
                if all(level.get(prefix + key) is None for key, _, _ in CSV_VALUES):
                    continue
                row = {"run": run.label, "run_dir": str(run.run_dir), "kind": run.kind,
                       "method": run.method if run.kind in ("imp", "demo") else row_name(run, level),
                       "level": level["level"], "percent_remaining": round(level["percent_remaining"], 6),
                       "flops": level.get("flops"), "series": series}
                for key, name, scale in CSV_VALUES:
                    mean, std = level.get(prefix + key), level.get(f"{prefix}{key}_std")
                    row[name] = None if mean is None else round(scale * mean, 6)
                    row[f"{name}_std"] = None if std is None else round(scale * std, 6)
                row["seeds"] = len(run.per_seed_values(level["level"], prefix + "test_accuracy")) or level["seeds"]
                rows.append(row)
    return rows
