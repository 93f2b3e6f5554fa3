"""Figures shared by every family: matplotlib without a display, atomic PNG writes, and the field's
percent-of-weights axis (log scale, decreasing left to right, tick labels that never overlap)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from ticketlab.files import write_bytes

TICK_SPACING = 0.07  # neighbouring tick labels are at least this fraction of the log axis apart


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display: reports are written on servers and in tests),
    imported on first use because it takes a while."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path, fit: bool = False) -> None:
    """Write the figure as PNG; `fit`: crop to what is drawn (a legend placed beside the axes included)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **({"bbox_inches": "tight", "pad_inches": 0.15} if fit else {}))
    pyplot().close(fig)
    write_bytes(path, buffer.getvalue())


def spaced_ticks(values, spacing: float = TICK_SPACING) -> list[float]:
    """Tick positions among `values` (positive), largest first, each at least `spacing` of the log
    axis's span from the next: their labels do not run into each other however many densities there are."""
    values = sorted({v for v in values if v > 0}, reverse=True)
    if not values:
        return []
    ratio = max(1.02, (values[0] / values[-1]) ** spacing)
    ticks: list[float] = []
    for value in values:
        if not ticks or ticks[-1] / value >= ratio:
            ticks.append(value)
    return ticks


def tick_label(percent: float) -> str:
    """3 significant digits, no exponent: 100, 51.2, 4.1, 0.26."""
    digits = max(0, 2 - math.floor(math.log10(percent))) if percent > 0 else 0
    text = f"{percent:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent_axis(ax, percents) -> None:
    """x: percent of weights remaining, log scale, decreasing (sparser to the right)."""
    percents = [p for p in percents if p and p > 0]
    if not percents:
        return
    ax.set_xscale("log")
    ax.set_xlim(max(percents) * 1.15, min(percents) / 1.15)
    ticks = spaced_ticks(percents)
    ax.set_xticks(ticks)
    ax.set_xticklabels([tick_label(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("percent of weights remaining (log scale)")
    ax.grid(alpha=0.3)
