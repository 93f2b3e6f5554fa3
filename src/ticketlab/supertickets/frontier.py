"""Accuracy against effective cost: the table and plot every SuperTickets result is read on.

A point is one run (method, target density) averaged over seeds: test accuracy (found, and retrained
when the run retrained) against FLOPs per example of its shrunk architecture at its mask. The table
and plot show the points; whether one is on the frontier is a paired comparison over seeds with the
baselines that cost no more (benchmarks/supertickets_fashion.py states the rule).
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.checks import read_json_file
from ticketlab.errors import TicketlabError
from ticketlab.files import write_json, write_text
from ticketlab.figures import pyplot, save_figure


def load_points(run_dirs: list[str]) -> list[dict]:
    points = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "summary.json"
        if not path.is_file():
            raise TicketlabError(f"{run_dir} holds no summary.json; give run directories written by `ticketlab supertickets`")
        summary = read_json_file(path, "run summary")
        if not isinstance(summary, dict) or summary.get("kind") != "supertickets":
            kind = summary.get("kind") if isinstance(summary, dict) else None
            raise TicketlabError(f"{run_dir} is a {kind} run; the frontier plots `ticketlab supertickets` runs")
        needed = {"method": str, "target_density": (int, float), "flops": (int, float), "live_parameters": (int, float),
                  "train_examples": (int, float), "seeds": list}
        wrong = [k for k, kind in needed.items() if not isinstance(summary.get(k), kind) or isinstance(summary.get(k), bool)]
        if wrong:
            raise TicketlabError(f"{path} lacks or has wrong values for {', '.join(wrong)}; the run's summary is damaged")
        for stage in ("found", "retrained"):
            key = "test_accuracy" if stage == "found" else "retrained_test_accuracy"
            if summary.get(key) is None:
                continue
            points.append({"method": summary["method"], "stage": stage, "target_density": summary["target_density"],
                           "accuracy": summary[key], "accuracy_std": summary.get(f"{key}_std") or 0.0,
                           "flops": summary["flops"], "parameters": summary["live_parameters"],
                           "train_examples": summary["train_examples"], "seeds": len(summary["seeds"]),
                           "run_dir": str(run_dir)})
    return points


def frontier_table(points: list[dict]) -> str:
    lines = ["| method | stage | density | test accuracy (%) | MFLOPs / example | live params | training examples |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for p in sorted(points, key=lambda p: (p["stage"], -p["target_density"], p["method"])):
        lines.append(f"| {p['method']} | {p['stage']} | {p['target_density']:g} | {100 * p['accuracy']:.2f} ± "
                     f"{100 * p['accuracy_std']:.2f} | {p['flops'] / 1e6:.2f} | {p['parameters']:,.0f} | "
                     f"{p['train_examples']:,.0f} |")
    return "\n".join(lines)


def plot_frontier(points: list[dict], path: Path, title: str = "accuracy vs effective cost") -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    methods = sorted({p["method"] for p in points}, key=lambda m: (not m.startswith("supertickets"), m))
    colors = plt.get_cmap("tab10")
    for i, method in enumerate(methods):
        for stage, marker, style in (("found", "o", "-"), ("retrained", "s", "--")):
            series = sorted((p for p in points if p["method"] == method and p["stage"] == stage), key=lambda p: p["flops"])
            if not series:
                continue
            ax.errorbar([p["flops"] / 1e6 for p in series], [100 * p["accuracy"] for p in series],
                        yerr=[100 * p["accuracy_std"] for p in series], marker=marker, linestyle=style,
                        color=colors(i % 10), capsize=2, label=f"{method} ({stage})")
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per example (millions, shrunk architecture at the ticket's mask)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def write_frontier(run_dirs: list[str], out_dir: str) -> dict:
    points = load_points(run_dirs)
    if not points:
        raise TicketlabError("the runs hold no results to plot")
    out = Path(out_dir)
    plot_frontier(points, out / "frontier.png")
    write_text(out / "frontier.md", frontier_table(points) + "\n\n![accuracy vs cost](frontier.png)\n")
    result = {"points": points, "plot": str(out / "frontier.png"), "table": str(out / "frontier.md")}
    write_json(out / "frontier.json", result)
    return result
