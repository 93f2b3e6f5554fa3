"""`ticketlab sweep GRID_FILE`: the command that runs a grid of other commands (ticketlab.sweeps)."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.commands.spec import Command, Json, RunsDir, Workers, arg
from ticketlab.sweeps import ENGINES, run_sweep, sweep_table


@dataclass(kw_only=True)
class SweepOptions(Workers, RunsDir, Json):
    grid: str = arg(help="grid file (.toml, or .yaml/.yml with PyYAML)", positional=True)
    engine: str = arg("local", "where the runs execute: a local process pool or Ray", choices=ENGINES)
    address: str | None = arg(None, "ray only: address of an existing cluster (default: start a local one)")
    workers: int | None = arg(None, "parallel runs (default: the number of cores)", rank=4)


def sweep(configs: dict, options: SweepOptions, log) -> dict:
    return run_sweep(options.grid, options.engine, options.runs_dir, options.workers, options.address, log)


SWEEP = Command("sweep", "run a grid of runs (methods × densities × seeds × ...) locally or on Ray",
                "Run every point of a TOML/YAML grid file as an independent run of one command, on a local process "
                "pool or on Ray; finished runs are skipped when run again; writes summary.json and report.md in "
                "runs/sweep-<hash>/. Exit code 1 when a run failed.",
                SweepOptions, sweep, lambda summary, options: sweep_table(summary) + f"\nreport: {summary.get('report')}",
                status=lambda summary: 0 if summary["failed"] == 0 else 1)
