"""The report's plots. Against percent of weights remaining (log x, decreasing): one curve per run (runs
with one ticket each, such as a sweep's PaI cells, joined into one curve per method), mean over seeds
with a band of ± 1 std, each run in its own colour with its dense line in that colour, controls and
ablations dashed; a level a series lacks breaks its line instead of being drawn through. Training
curves: one panel per run, every chosen level's mean test accuracy over all its seeds with its band.
Every legend says what the bands are and over how many seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.figures import percent_axis, pyplot, save_figure
from ticketlab.lth.aggregate import mean_std
from ticketlab.reports.loading import RunResults

CONTROL_STYLES = ("--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))
CONTROL_MARKERS = ("s", "^", "v", "D", "x")
MULTI_LEVEL = ("imp", "demo")  # kinds whose runs are curves by themselves


def seed_span(counts) -> str:
    counts = sorted({c for c in counts if c})
    if not counts:
        return "0 seeds"
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"{span} seed{'s' if counts[-1] > 1 else ''}"


def band_legend(counts) -> str:
    if max(counts, default=0) <= 1:
        return "one seed each: no band"
    return f"mean; band ± 1 std over {seed_span(counts)}"


def groups(runs: list[RunResults]) -> list[tuple[str, list[RunResults]]]:
    """Curves to draw: each IMP run on its own; runs of one ticket each joined by `curve` name (a
    sweep's cells of one method become one curve over their densities)."""
    out: dict[str, list[RunResults]] = {}
    for run in runs:
        name = run.label if run.kind in MULTI_LEVEL or len(run.levels) > 1 else (run.curve or run.label)
        out.setdefault(name, []).append(run)
    return list(out.items())


def _points(members: list[RunResults], key: str, scale: float):
    """(x, mean, std, seeds) along the curve, NaN where the series lacks a level: a gap, not a line through it."""
    points = sorted(((level["percent_remaining"], level) for run in members for level in run.levels),
                    key=lambda p: -p[0])
    xs, ys, sds, counts = [], [], [], []
    for x, level in points:
        value = level.get(key)
        xs.append(x)
        ys.append(math.nan if value is None else scale * value)
        sds.append(0.0 if value is None or level.get(f"{key}_std") is None else scale * level[f"{key}_std"])
        counts.append(level["seeds"] if value is not None else 0)
    return xs, ys, sds, counts


def _draw(ax, xs, ys, sds, label, color, linestyle, marker):
    if all(math.isnan(y) for y in ys):
        return False
    line, = ax.plot(xs, ys, linestyle=linestyle, marker=marker, color=color, label=label, markersize=4)
    low = [y - s for y, s in zip(ys, sds)]
    high = [y + s for y, s in zip(ys, sds)]
    if any(sds):
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    return True


def plot_vs_density(runs: list[RunResults], path: Path, title: str, key: str, ylabel: str, scale: float = 1.0,
                    dense_line: bool = False) -> bool:
    """One value per level (mean ± std band) against percent of weights remaining: tickets, controls
    and ablations, and each run's dense accuracy as a line. False (nothing written) when no run has it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    curves = groups(runs)
    xs_all, counts_all, drawn = [], [], False
    for index, (name, members) in enumerate(curves):
        color = f"C{index % 10}" if len(curves) > 1 else "C0"
        label = name if len(curves) > 1 else "ticket"
        xs, ys, sds, counts = _points(members, key, scale)
        drawn |= _draw(ax, xs, ys, sds, label, color, "-", "o")
        xs_all += xs
        counts_all += counts
        kinds = sorted({k for run in members for k in run.control_kinds()})
        for j, kind in enumerate(kinds):
            cxs, cys, csds, ccounts = _points(members, f"control_{kind}_{key}", scale)
            kind_color = color if len(curves) > 1 else f"C{(j + 1) % 10}"
            drawn |= _draw(ax, cxs, cys, csds, f"{name}: {kind}" if len(curves) > 1 else kind, kind_color,
                           CONTROL_STYLES[j % len(CONTROL_STYLES)], CONTROL_MARKERS[j % len(CONTROL_MARKERS)])
            counts_all += ccounts
        dense = [level for run in members for level in run.levels
                 if run.kind in MULTI_LEVEL and level["level"] == 0 and level.get(key) is not None]
        if dense_line and dense:
            ax.axhline(scale * dense[0][key], color=color if len(curves) > 1 else "gray", linestyle=(0, (1, 2)),
                       linewidth=1.2, label=f"dense ({name})" if len(curves) > 1 else "dense (level 0)")
    if not drawn:
        plt.close(fig)
        return False
    percent_axis(ax, xs_all)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    beside = len(ax.get_legend_handles_labels()[1]) > 4  # a long legend over the curves would hide them
    if beside:
        ax.legend(fontsize=8, title=band_legend(counts_all), title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=8, title=band_legend(counts_all), title_fontsize=8, loc="best")
        fig.tight_layout()
    save_figure(fig, path, fit=beside)
    return True


# ---- training curves -----------------------------------------------------------------------------

def default_curve_levels(run: RunResults) -> list[int]:
    available = [r["level"] for r in run.levels]
    return sorted({available[0], available[len(available) // 2], available[-1]})


def _read_curve(path: str) -> dict[int, float]:
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return {r["iteration"]: r["test_accuracy"] for r in records if r.get("test_accuracy") is not None}


def _mean_curve(paths: list[str]):
    """Iterations every seed evaluated, with the mean test accuracy (%) and its std over the seeds."""
    curves = [_read_curve(p) for p in paths if p and Path(p).exists()]
    if not curves:
        return None
    shared = sorted(set.intersection(*(set(c) for c in curves)))
    stats = [mean_std([c[i] for c in curves]) for i in shared]
    return shared, [100 * m for m, _ in stats], [100 * (s or 0.0) for _, s in stats], len(curves)


def curve_series(run: RunResults, levels: list[int]) -> list[tuple[str, str, list[str]]]:
    """(label, series, metrics file per seed) for the chosen levels: the ticket's, and for runs of one
    ticket also each variant's."""
    out = []
    for level in run.levels:
        if level["level"] not in levels:
            continue
        per_seed = [r for records in run.per_seed.values() for r in records if r["level"] == level["level"]]
        name = f"level {level['level']} ({level['percent_remaining']:.1f}%)" if run.kind in MULTI_LEVEL else \
            f"{level.get('method') or run.method} ({level['percent_remaining']:.1f}%)"
        out.append((name, "ticket", [r.get("metrics") for r in per_seed]))
        if run.kind not in MULTI_LEVEL:
            out += [(kind, kind, [r.get(f"control_{kind}_metrics") for r in per_seed]) for kind in run.control_kinds()]
    return out


def plot_curves(runs: list[RunResults], levels_by_run: list[list[int]], path: Path) -> bool:
    """Test accuracy during training, one panel per run; False (nothing written) without any metrics."""
    plt = pyplot()
    columns = 1 if len(runs) == 1 else 2
    rows = math.ceil(len(runs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, 4 * rows), dpi=100, squeeze=False)
    drawn_any = False
    for ax, run, levels in zip(axes.flat, runs, levels_by_run):
        counts = []
        for j, (label, series, paths) in enumerate(curve_series(run, levels)):
            curve = _mean_curve(paths)
            if curve is None:
                continue
            iterations, means, stds, seeds = curve
            style = "-" if series == "ticket" else CONTROL_STYLES[j % len(CONTROL_STYLES)]
            line, = ax.plot(iterations, means, linestyle=style, label=label)
            if seeds > 1:
                ax.fill_between(iterations, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                                color=line.get_color(), alpha=0.15, linewidth=0)
            counts.append(seeds)
        ax.set_title(run.label, fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        if counts:
            drawn_any = True
            ax.legend(fontsize=8, title=band_legend(counts), title_fontsize=8)
        else:
            ax.text(0.5, 0.5, "no training metrics", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(runs):]:
        ax.set_visible(False)
    if not drawn_any:
        plt.close(fig)
        return False
    fig.tight_layout()
    save_figure(fig, path)
    return True


def check_curve_levels(run: RunResults, levels: list[int]) -> None:
    missing = sorted(set(levels) - {r["level"] for r in run.levels})
    if missing:
        raise TicketlabError(f"level(s) {missing} are not finished in {run.run_dir}; it has levels "
                             f"{[r['level'] for r in run.levels]}")
