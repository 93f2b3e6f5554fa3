"""Results as the field shows them: a text table, report.md, and accuracy vs % weights remaining."""

from __future__ import annotations

import io
from pathlib import Path

from ticketlab.files import write_bytes, write_text


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


# (header, record key, format)
LEVEL_COLUMNS = [
    ("level", "level", "d"),
    ("% weights", "percent_remaining", ".2f"),
    ("test acc", "test_accuracy", ".4f"),
    ("reinit acc", "reinit_test_accuracy", ".4f"),
    ("early-stop it", "early_stop_iteration", "d"),
    ("reinit early-stop it", "reinit_early_stop_iteration", "d"),
    ("test acc @ early stop", "early_stop_test_accuracy", ".4f"),
]


def level_table(levels: list[dict], markdown: bool = False) -> str:
    columns = [c for c in LEVEL_COLUMNS if any(c[1] in r for r in levels)]
    headers = [c[0] for c in columns]
    rows = [[_fmt(r.get(key), spec) for _, key, spec in columns] for r in levels]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def plot_accuracy(levels: list[dict], path: str | Path, title: str) -> None:
    """Test accuracy vs percent of weights remaining, log x decreasing left to right, dense as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["percent_remaining"] for r in levels]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot(x, [100 * r["test_accuracy"] for r in levels], "o-", label="ticket (IMP)")
    if any(r.get("reinit_test_accuracy") is not None for r in levels):
        pts = [(r["percent_remaining"], 100 * r["reinit_test_accuracy"]) for r in levels
               if r.get("reinit_test_accuracy") is not None]
        ax.plot(*zip(*pts), "s--", label="random reinit")
    dense = [r for r in levels if r["level"] == 0]
    if dense:
        ax.axhline(100 * dense[0]["test_accuracy"], color="gray", linestyle=":", label="dense")
    ax.set_xscale("log")
    ax.set_xlim(max(x) * 1.15, min(x) / 1.15)
    ticks = sorted(set(round(v, 1) for v in x), reverse=True)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("percent of weights remaining")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def write_report(out_dir: str | Path, title: str, levels: list[dict], config: dict, notes: list[str]) -> None:
    out_dir = Path(out_dir)
    plot_accuracy(levels, out_dir / "accuracy.png", title)
    lines = [f"# {title}", "", *notes, "", level_table(levels, markdown=True), "",
             "![test accuracy vs percent of weights remaining](accuracy.png)", "", "## Config", "", "```"]
    for section, values in config.items():
        for key, value in values.items():
            lines.append(f"{section}.{key} = {value!r}")
    lines += ["```", ""]
    write_text(out_dir / "report.md", "\n".join(lines))
