"""Results as the field shows them: level tables, report.md (optionally HTML) and PNG plots.

Plots: test accuracy vs percent of weights remaining (log x, decreasing left to right, mean ± std
band over seeds, dense accuracy as a line, each control as its own curve), early-stopping iteration
vs percent remaining, and training curves of chosen levels.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.checks import read_json_file
from ticketlab.deploy.flops import ticket_counts
from ticketlab.errors import TicketlabError
from ticketlab.files import write_bytes, write_text
from ticketlab.lth.aggregate import aggregate_levels, level_records, seed_dirs


@dataclass
class RunResults:
    label: str
    run_dir: Path
    config: dict
    per_seed: dict[int, list[dict]]
    levels: list[dict] = field(default_factory=list)   # aggregated over seeds

    def control_kinds(self) -> list[str]:
        kinds = {k[len("control_"):-len("_test_accuracy")] for r in self.levels for k in r
                 if k.startswith("control_") and k.endswith("_test_accuracy") and not k.endswith("early_stop_test_accuracy")}
        return sorted(kinds)


def load_run(path: str | Path, seeds: list[int] | None = None) -> RunResults:
    """Read a run (`<kind>-<hash>` with all its seeds or the given ones, or one `seed-<s>` folder)."""
    path = Path(path)
    if path.name.startswith("seed-") and path.name[5:].isdigit() and (path.parent / "config.json").exists():
        run_dir, found = path.parent, {int(path.name[5:]): path}
    elif (path / "config.json").exists():
        run_dir, found = path, seed_dirs(path)
    else:
        raise TicketlabError(f"{path} is not a ticketlab run directory (no config.json); give runs/<kind>-<hash>")
    if seeds is not None:
        found = {s: d for s, d in found.items() if s in seeds}
    config = read_json_file(run_dir / "config.json", "run config")
    if not isinstance(config, dict):
        raise TicketlabError(f"{run_dir / 'config.json'} is not a ticketlab run config; give runs/<kind>-<hash>")
    per_seed = {s: recs for s, d in found.items() if (recs := level_records(d))}
    if not per_seed:
        raise TicketlabError(f"{path} has no finished level yet; run or resume it first")
    results = RunResults(f"{run_dir.name} ({_method(config)})", run_dir, config, per_seed)
    results.levels = aggregate_levels(per_seed)
    for level in results.levels:  # FLOPs of the first seed's ticket (seeds differ only in how layers share the density)
        level["flops"] = ticket_counts(level["tickets"][0])["flops"] if level.get("tickets") else None
    return results


def _method(config: dict) -> str:
    prune = config.get("config", {}).get("prune", {})
    if config.get("kind") not in ("imp", "demo") or not prune:
        return config.get("kind", "?")
    retrain = prune.get("retrain", "rewind")
    if retrain != "rewind":
        return retrain
    return "imp" if prune.get("rewind_step", "0it") in ("0it", "0ep", "0") else f"ltr k={prune['rewind_step']}"


def _pm(mean, std, spec=".4f") -> str:
    if mean is None:
        return "—"
    return format(mean, spec) if not std else f"{format(mean, spec)} ± {format(std, spec)}"


def level_table(results: RunResults, markdown: bool = False) -> str:
    kinds = results.control_kinds()
    headers = ["level", "% weights", "FLOPs/example", "test acc"] + [f"{k} acc" for k in kinds]
    headers += ["early-stop it", "acc @ early stop"]
    headers += [f"{k} early-stop it" for k in kinds] + ["seeds"]
    rows = []
    for r in results.levels:
        flops = f"{r['flops']:,}" if r.get("flops") is not None else "—"
        row = [str(r["level"]), f"{r['percent_remaining']:.2f}", flops, _pm(r["test_accuracy"], r.get("test_accuracy_std"))]
        row += [_pm(r.get(f"control_{k}_test_accuracy"), r.get(f"control_{k}_test_accuracy_std")) for k in kinds]
        row += [_pm(r["early_stop_iteration"], r.get("early_stop_iteration_std"), ".0f"),
                _pm(r["early_stop_test_accuracy"], r.get("early_stop_test_accuracy_std"))]
        row += [_pm(r.get(f"control_{k}_early_stop_iteration"), r.get(f"control_{k}_early_stop_iteration_std"), ".0f")
                for k in kinds]
        row.append(str(r["seeds"]))
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    return "\n".join(lines + ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows])


# ---- plots -------------------------------------------------------------------------------------

def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    write_bytes(path, buffer.getvalue())


def _percent_axis(ax, xs: list[float]) -> None:
    ax.set_xscale("log")
    ax.set_xlim(max(xs) * 1.15, min(xs) / 1.15)  # decreasing: sparser to the right
    ticks = sorted({round(v, 1) for v in xs}, reverse=True)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("percent of weights remaining")
    ax.grid(alpha=0.3)


def _series(ax, levels, key, label, style, scale=1.0):
    pts = [(r["percent_remaining"], r[key] * scale, (r.get(f"{key}_std") or 0.0) * scale)
           for r in levels if r.get(key) is not None]
    if not pts:
        return
    xs, ys, sd = zip(*pts)
    line, = ax.plot(xs, ys, style, label=label, markersize=4)
    if any(sd):
        ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)],
                        color=line.get_color(), alpha=0.2)


def plot_vs_density(runs: list[RunResults], path: Path, title: str, key: str, ylabel: str, scale: float = 1.0,
                    dense_line: bool = False) -> None:
    """One value per level (mean ± std band) against percent of weights remaining, tickets and controls."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    xs = []
    for run in runs:
        name = run.label if len(runs) > 1 else "ticket"
        _series(ax, run.levels, key, name, "o-", scale)
        for kind in run.control_kinds():
            _series(ax, run.levels, f"control_{kind}_{key}", f"{name}: {kind}" if len(runs) > 1 else kind, "s--", scale)
        dense = [r for r in run.levels if r["level"] == 0]
        if dense_line and dense:
            ax.axhline(scale * dense[0][key], color="gray", linestyle=":", linewidth=1,
                       label=f"dense ({name})" if len(runs) > 1 else "dense")
        xs += [r["percent_remaining"] for r in run.levels]
    _percent_axis(ax, xs)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_curves(run: RunResults, levels: list[int], path: Path) -> None:
    """Test accuracy during training for chosen levels (first seed of the run)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    seed = min(run.per_seed)
    seed_dir = run.run_dir / f"seed-{seed}"
    for level in levels:
        metrics_path = seed_dir / f"level-{level}" / "metrics.jsonl"
        if not metrics_path.exists():
            raise TicketlabError(f"level {level} has no metrics in {seed_dir}; choose among the finished levels")
        records = [json.loads(line) for line in metrics_path.read_text().splitlines()]
        density = next(r["percent_remaining"] for r in run.levels if r["level"] == level)
        ax.plot([r["iteration"] for r in records], [100 * r["test_accuracy"] for r in records],
                label=f"level {level} ({density:.1f}%)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"training curves, seed {seed}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# ---- documents ---------------------------------------------------------------------------------

def write_report(runs: list[RunResults], out_dir: str | Path, title: str, curve_levels: list[int] | None = None,
                 notes: list[str] = (), html: bool = False) -> dict:
    """Write report.md (and report.html) with tables and plots into `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    plots = {"accuracy": out_dir / "accuracy.png", "early_stop": out_dir / "early_stop.png"}
    plot_vs_density(runs, plots["accuracy"], title, "test_accuracy", "test accuracy (%)", 100, dense_line=True)
    plot_vs_density(runs, plots["early_stop"], title, "early_stop_iteration",
                    "early-stopping iteration (min. validation loss)")
    if curve_levels is None:
        available = [r["level"] for r in runs[0].levels]
        curve_levels = sorted({available[0], available[len(available) // 2], available[-1]})
    plots["curves"] = out_dir / "curves.png"
    plot_curves(runs[0], curve_levels, plots["curves"])

    lines = [f"# {title}", "", *notes, ""]
    for run in runs:
        seeds = ", ".join(str(s) for s in sorted(run.per_seed))
        lines += [f"## {run.label}", "", f"Run directory `{run.run_dir}`, seeds {seeds}. Test accuracy at the end of "
                  "training, mean ± std over seeds; early-stopping iteration = iteration of minimum validation loss.", "",
                  level_table(run, markdown=True), "", "Config (non-default values):", "", "```"]
        lines += [f"{k} = {v!r}" for k, v in sorted(run.config.get("identity", {}).items())] or ["(all defaults)"]
        lines += ["```", ""]
    lines += ["## Plots", "", "![test accuracy vs percent of weights remaining](accuracy.png)", "",
              "![early-stopping iteration vs percent of weights remaining](early_stop.png)", "",
              f"![training curves of levels {curve_levels}](curves.png)", ""]
    markdown = "\n".join(lines)
    write_text(out_dir / "report.md", markdown)
    paths = {"report": str(out_dir / "report.md"), **{f"{k}_plot": str(v) for k, v in plots.items()}}
    if html:
        write_text(out_dir / "report.html", _html(markdown, plots))
        paths["html"] = str(out_dir / "report.html")
    return paths


def _html(markdown: str, plots: dict[str, Path]) -> str:
    """A self-contained page: the markdown's text and tables, images embedded as data URIs."""
    import html as escape
    body, table = [], []

    def flush_table():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            out = ["<table>", "<tr>" + "".join(f"<th>{escape.escape(c)}</th>" for c in cells[0]) + "</tr>"]
            out += ["<tr>" + "".join(f"<td>{escape.escape(c)}</td>" for c in row) + "</tr>" for row in cells[1:]]
            body.append("\n".join(out + ["</table>"]))
            table.clear()

    images = {p.name: base64.b64encode(p.read_bytes()).decode() for p in plots.values()}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("```"):
            body.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
        elif in_code:
            body.append(escape.escape(line))
        elif line.startswith("!["):
            alt, name = line[2:].split("](")
            body.append(f'<img alt="{escape.escape(alt)}" src="data:image/png;base64,{images[name.rstrip(")")]}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{escape.escape(line.lstrip('# '))}</h{level}>")
        elif line.strip():
            body.append(f"<p>{escape.escape(line)}</p>")
    flush_table()
    style = "body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}" \
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}"
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>\n" + \
        "\n".join(body) + "\n</body></html>\n"
