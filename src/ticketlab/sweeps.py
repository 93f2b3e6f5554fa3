"""`ticketlab sweep GRID_FILE`: a grid of independent runs on a local process pool or on Ray.

A grid file (TOML, or YAML when PyYAML is installed) names one command, the options every run
shares, and lists to combine (their cartesian product, in file order):

    command = "pai"                       # any result command: train, imp, prune, cts, pai, sanity, layers, ...
    [fixed]
    dataset = "fashion-mnist"
    steps = "2000it"
    [grid]
    methods = ["snip", "grasp", "synflow"]
    densities = [0.05, 0.012]
    seed = [0, 1, 2]

Keys are the command's option names (`lr`, `cts_lr`, `methods`, ...; see `ticketlab COMMAND --help`)
and values arrive typed. Each run builds that command's configs and options through the command
registry (ticketlab.commands), the path the CLI takes, and calls its run function in a worker: it
checks its inputs, stores its results in its own run directory and, when run again, returns the
stored result at once. Every point's options are built (so checked) before any run starts. The sweep
keeps `runs/sweep-<hash>/run-<i>.json` per finished run (its options, the equivalent command line and
its result; a rerun skips it without starting a worker), `summary.json`, a table of every run's
options and test accuracy, and `report.md` (ticketlab.reports.sweep: the grid points, then the report
of every run the sweep made). Engines: `local` (a spawned process pool, torch threads shared out
among the workers) or `ray` (`pip install 'ticketlab[ray]'`; a local instance, or an existing cluster
with --address). Progress on stderr: runs done / running / failed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import json
import multiprocessing
import os
import sys
import tomllib
from pathlib import Path

import torch

from ticketlab import checks, machine
from ticketlab.commands.build import build, slots
from ticketlab.commands.failures import describe
from ticketlab.commands.registry import command as registered_command
from ticketlab.commands.spec import Command, flag
from ticketlab.errors import TicketlabError, missing_extra
from ticketlab.files import read_json, write_json
from ticketlab.reports.sweep import write_sweep_report
from ticketlab.runtime import worker_setup

ENGINES = ("local", "ray")
MAX_RUNS = 10_000  # runs in one grid (each a full training): more is surely a mistake in the grid


def read_grid(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise TicketlabError(f"grid file {path} is a folder; give a .toml or .yaml file")
    if not path.is_file():
        raise TicketlabError(f"grid file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TicketlabError(f"grid file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise missing_extra("YAML grid files need PyYAML (or write the grid in TOML)", "yaml") from None
            grid = yaml.safe_load(text)
        else:
            grid = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise TicketlabError(f"grid file {path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'TOML'}: "
                             f"{str(exc).splitlines()[0]}") from None
    except Exception as exc:  # noqa: BLE001 - PyYAML's errors share no public base we can import lazily
        raise TicketlabError(f"grid file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return check_grid(grid, f"grid file {path}")


def check_grid(grid, where: str = "the grid") -> dict:
    """A grid (as read from a file, or a dict given to the Python API) checked: command, fixed, grid."""
    if not isinstance(grid, dict) or not isinstance(grid.get("command"), str):
        raise TicketlabError(f"{where} must set command = \"<ticketlab command>\" (e.g. \"pai\")")
    unknown = sorted(set(grid) - {"command", "fixed", "grid"})
    if unknown:
        raise TicketlabError(f"{where} has unknown sections {unknown}; use command, [fixed] and [grid]")
    fixed, axes = grid.get("fixed", {}), grid.get("grid", {})
    if not isinstance(fixed, dict) or not isinstance(axes, dict):
        raise TicketlabError(f"{where}: [fixed] and [grid] must be tables of options")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise TicketlabError(f"{where}: grid.{key} must be a non-empty list of values")
    for section, options in (("fixed", fixed), ("grid", axes)):
        for key, value in options.items():
            for item in (value if section == "grid" else [value]):
                if not _option_value(item):
                    raise TicketlabError(f"{where}: {section}.{key} holds {item!r}; option values are "
                                         "numbers, text, true/false or lists of those")
    size = grid_size(axes)
    if size > MAX_RUNS:
        raise TicketlabError(f"{where} makes {size:,} runs, more than the limit of {MAX_RUNS:,}; "
                             "split it into smaller grids")
    both = sorted(set(fixed) & set(axes))
    if both:
        raise TicketlabError(f"{where}: {both} appear in both [fixed] and [grid]; keep each option in one")
    return {"command": grid["command"], "fixed": fixed, "grid": axes}


def _option_value(value) -> bool:
    """What `arguments` can turn into command-line text."""
    if isinstance(value, list):
        return all(isinstance(v, (str, int, float)) for v in value)
    return isinstance(value, (str, int, float))  # bool is an int


def grid_size(axes: dict) -> int:
    """Number of runs of a grid: the product of its axes' lengths, computed without expanding it."""
    size = 1
    for values in axes.values():
        size *= len(values)
    return size


def expand(grid: dict) -> list[dict]:
    """Every run's options: the fixed ones plus one point of the grid."""
    keys = list(grid["grid"])
    return [{**grid["fixed"], **dict(zip(keys, values))} for values in itertools.product(*grid["grid"].values())]


def arguments(command: str, options: dict, runs_dir: str) -> list[str]:
    """The command line equivalent to one run (recorded with its result, for people to rerun it)."""
    args = [command]
    for key, value in options.items():
        if value is True:
            args.append(flag(key))
        elif value is False:
            args.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            args += [flag(key), ",".join(map(str, value))]
        else:
            args += [flag(key), str(value)]
    return args + ["--runs-dir", runs_dir, "--json", "--quiet"]


def point(command: Command, options: dict, runs_dir: str) -> dict:
    """One run's option values by name: the grid's (keys written with - or _), the sweep's runs directory,
    and no progress bars."""
    given = {key.replace("-", "_"): value for key, value in options.items()}
    forced = {"runs_dir": runs_dir, "json": True, "quiet": True}
    return {**given, **{name: value for name, value in forced.items() if name in slots(command)}}


def run_point(name: str, given: dict) -> dict:
    """One run in this process: its result, or the one-line error it ended with."""
    command = registered_command(name)
    try:
        configs, options = build(command, given)
        result = command.execute(configs, options, _silent)
    except Exception as exc:  # noqa: BLE001 - describe() says which failures are the run's own
        message = describe(exc, given.get("runs_dir"))
        if message is None:
            raise
        return {"ok": False, "error": message}
    status = command.status(result)
    if status != 0:
        return {"ok": False, "error": f"exit code {status}"}
    return {"ok": True, "result": checks.strict_json(result)}  # as --json would print it: NaN becomes null


def _silent(message: str) -> None:
    """A run's log lines: the sweep reports progress itself."""


def check_points(command: Command, points: dict[int, dict]) -> None:
    """Every run's configs and options built in the parent, so a typo anywhere in the grid stops the sweep
    before it starts."""
    for index, given in points.items():
        try:
            build(command, given)
        except TicketlabError as exc:
            raise TicketlabError(f"the grid's options do not fit the command (run {index}): {exc}") from None


def headline(result: dict, key: str):
    """A value of any command's result: top level, the first of a sweep's rows, the last IMP level, or the
    training summary (test accuracy, run directory)."""
    for source in (result, (result.get("results") or [{}])[0], (result.get("levels") or [{}])[-1],
                   result.get("summary") or {}):
        if isinstance(source, dict) and source.get(key) is not None:
            return source[key]
    return None


def run_local(name: str, pending: dict[int, dict], workers: int, on_done) -> None:
    if workers == 1:  # one after another in this process: no pool to start, no script for spawn to re-import
        for index, given in pending.items():
            on_done(index, run_point(name, given))
        return
    threads = machine.threads_per_worker(workers)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=worker_setup,
                                                initargs=(threads,)) as pool:
        futures = {pool.submit(run_point, name, given): index for index, given in pending.items()}
        for future in concurrent.futures.as_completed(futures):
            on_done(futures[future], future.result())


def run_ray(name: str, pending: dict[int, dict], address: str | None, workers: int, on_done) -> None:
    try:
        import ray
    except ImportError:
        raise missing_extra("the ray engine needs Ray (or use --engine local)", "ray") from None
    started = not ray.is_initialized()
    if started:
        options = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
        ray.init(logging_level="ERROR", log_to_driver=False, **options)
    try:
        remote = ray.remote(num_cpus=1)(_ray_task)
        refs = {remote.remote(name, given): index for index, given in pending.items()}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            on_done(refs[done[0]], ray.get(done[0]))
    finally:
        if started:
            ray.shutdown()


def _ray_task(name: str, given: dict) -> dict:
    torch.set_num_threads(1)  # Ray gives each task one CPU
    return run_point(name, given)


def run_sweep(grid_path, engine: str, runs_dir: str, workers: int | None, address: str | None, log) -> dict:
    """`grid_path`: a grid file, or the grid itself as a dict ({"command": ..., "fixed": {...}, "grid": {...}})."""
    if engine not in ENGINES:
        raise TicketlabError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    grid = check_grid(grid_path) if isinstance(grid_path, dict) else read_grid(grid_path)
    runs = expand(grid)
    identity = json.dumps(grid, sort_keys=True, default=str)
    sweep_dir = Path(runs_dir) / f"sweep-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"
    all_args = {i: arguments(grid["command"], options, runs_dir) for i, options in enumerate(runs)}
    try:
        command = registered_command(grid["command"])
    except TicketlabError as exc:
        raise TicketlabError(f"the grid's options do not fit the command: {exc}") from None
    points = {i: point(command, options, runs_dir) for i, options in enumerate(runs)}
    check_points(command, points)
    records = {i: read_json(sweep_dir / f"run-{i}.json") for i in all_args if (sweep_dir / f"run-{i}.json").exists()}
    pending = {i: given for i, given in points.items() if i not in records}
    workers = max(1, min(workers or (os.cpu_count() or 1), len(pending) or 1))
    state = {"done": len(records), "failed": 0}
    if pending:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_json(sweep_dir / "grid.json", grid)

    def on_done(index: int, outcome: dict) -> None:
        record = {"index": index, "options": runs[index], "args": all_args[index], **outcome}
        if outcome["ok"]:
            write_json(sweep_dir / f"run-{index}.json", record)  # only finished runs are skipped next time
            state["done"] += 1
        else:
            state["failed"] += 1
        records[index] = record
        running = len(all_args) - state["done"] - state["failed"]
        log(f"sweep: {state['done']} done, {min(running, workers)} running, {state['failed']} failed"
            f" of {len(all_args)}" + ("" if outcome["ok"] else f" (run {index}: {outcome['error']})"))

    if pending:
        if engine == "local":
            run_local(grid["command"], pending, workers, on_done)
        else:
            run_ray(grid["command"], pending, address, workers, on_done)
    rows = [{"index": i, **records[i]["options"], "ok": records[i]["ok"],
             "test_accuracy": headline(records[i]["result"], "test_accuracy") if records[i]["ok"] else None,
             "run_dir": headline(records[i]["result"], "run_dir") if records[i]["ok"] else None,
             "error": records[i].get("error")} for i in sorted(records)]
    summary = {"sweep_dir": str(sweep_dir), "command": grid["command"], "engine": engine, "runs": len(all_args),
               "done": sum(r["ok"] for r in rows), "failed": sum(not r["ok"] for r in rows), "rows": rows}
    if rows:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_json(sweep_dir / "summary.json", summary)
        summary["report"] = str(write_sweep_report(summary, sweep_dir))
    return summary


def sweep_table(summary: dict) -> str:
    keys = [k for k in summary["rows"][0] if k not in ("index", "ok", "test_accuracy", "run_dir", "error")] if summary["rows"] else []
    varying = [k for k in keys if len({json.dumps(r.get(k), default=str) for r in summary["rows"]}) > 1] or keys
    lines = [f"sweep of {summary['runs']} {summary['command']} runs on {summary['engine']}: {summary['done']} done, "
             f"{summary['failed']} failed ({summary['sweep_dir']})",
             "  ".join(f"{k:>12s}" for k in varying) + f"  {'test acc':>9s}"]
    for row in summary["rows"]:
        acc = f"{row['test_accuracy']:.4f}" if row["test_accuracy"] is not None else (row["error"] or "—")
        lines.append("  ".join(f"{str(row.get(k)):>12s}" for k in varying) + f"  {acc:>9s}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `ticketlab sweep`")
