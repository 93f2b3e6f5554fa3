"""Reading finished runs of every kind back as one shape: per seed, one record per point (an IMP level,
a pruned ticket, a layer ticket, ...) with its density and test accuracy, and the variants trained
beside it (IMP controls, sanity ablations, the dense network) as `control_<name>_<value>` keys.

One reader per run kind, chosen by the `kind` in the run's config.json; a sweep's folder stands for
the runs its finished points made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.checks import read_json_file
from ticketlab.deploy.flops import ticket_counts
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json
from ticketlab.lth.aggregate import aggregate_levels, level_records, seed_dirs
from ticketlab.ticket import read_metadata

METRICS = "metrics.jsonl"
SUMMARY_KEYS = ("test_accuracy", "early_stop_iteration", "early_stop_test_accuracy")


@dataclass
class RunResults:
    """One run read back. `per_seed`: seed -> records (one per point, fractions as stored); `levels`:
    the records averaged over seeds (`<key>` mean, `<key>_std`, `seeds`); `label`: how the report
    names the run (set by `labels.assign` when runs are compared)."""
    label: str
    run_dir: Path
    config: dict
    per_seed: dict[int, list[dict]]
    levels: list[dict] = field(default_factory=list)
    kind: str = "imp"
    method: str = ""
    sanity: list[dict] = field(default_factory=list)  # the run's sanity-<seeds>.json results
    notes: list[str] = field(default_factory=list)
    curve: str = ""  # the curve a run of one ticket joins in plots (labels.curve_names)

    def control_kinds(self) -> list[str]:
        """The variants trained beside the ticket (controls, ablations, the dense network)."""
        return sorted({k[len("control_"):-len("_test_accuracy")] for r in self.levels for k in r
                       if k.startswith("control_") and k.endswith("_test_accuracy")
                       and not k.endswith("early_stop_test_accuracy")})

    @property
    def seeds(self) -> list[int]:
        return sorted(self.per_seed)

    def per_seed_values(self, level: int, key: str) -> dict[int, float]:
        """seed -> value of `key` at `level`, over the seeds that have it."""
        return {seed: record[key] for seed, records in self.per_seed.items() for record in records
                if record["level"] == level and record.get(key) is not None}

    def trained(self) -> bool:
        return any(r.get("test_accuracy") is not None for r in self.levels)


# ---- one reader per kind: seed folder -> records ------------------------------------------------

def _summary(folder: Path) -> dict | None:
    path = folder / "summary.json"
    return read_json(path) if path.exists() else None


def _imp_records(seed_dir: Path) -> list[dict]:
    records = level_records(seed_dir)
    for record in records:
        level_dir = Path(record["ticket"]).parent
        record["metrics"] = str(level_dir / METRICS)
        for control_dir in level_dir.glob("control-*"):
            record[f"control_{control_dir.name[len('control-'):]}_metrics"] = str(control_dir / METRICS)
    return records


def _prune_records(seed_dir: Path) -> list[dict]:
    """A PaI or CTS ticket (untrained until `pai`, `sanity` or `train-ticket` trains it) and its ablations."""
    ticket = seed_dir / "ticket.safetensors"
    if not ticket.exists():
        return []
    meta = read_metadata(ticket)
    record = {"level": 0, "density": meta["density"], "percent_remaining": 100 * meta["density"],
              "ticket": str(ticket), "search_cost": meta.get("search_cost"), "method": meta.get("method"),
              **{key: None for key in SUMMARY_KEYS}}
    trained = _summary(seed_dir / "train")
    if trained:
        record.update(trained)
        record["metrics"] = str(seed_dir / "train" / METRICS)
    for ablation_dir in sorted(seed_dir.glob("ablation-*")):
        name = ablation_dir.name[len("ablation-"):]
        folder = ablation_dir / "train" if (ablation_dir / "train").is_dir() else ablation_dir
        summary = _summary(folder)
        if summary:
            record.update({f"control_{name}_{key}": summary.get(key) for key in SUMMARY_KEYS})
            record[f"control_{name}_metrics"] = str(folder / METRICS)
    return [record]


def _dense_records(seed_dir: Path) -> list[dict]:
    summary = _summary(seed_dir)
    if not summary:
        return []
    return [{"level": 0, "density": 1.0, "percent_remaining": 100.0, "ticket": str(seed_dir / "ticket.safetensors"),
             "metrics": str(seed_dir / METRICS), **summary}]


def _structured_records(seed_dir: Path) -> list[dict]:
    """Layer and filter tickets: smaller dense networks, compared with the dense network of their config."""
    if not (seed_dir / "result.json").exists():
        return []
    result = read_json(seed_dir / "result.json")
    ticket_costs, dense_costs = result.get("ticket_costs") or {}, result.get("dense_costs") or {}
    density = ticket_costs["parameters"] / dense_costs["parameters"] if dense_costs.get("parameters") else 1.0
    summary = _summary(seed_dir) or {}
    record = {"level": 0, "density": density, "percent_remaining": 100 * density, "ticket": result.get("ticket"),
              "metrics": str(seed_dir / METRICS), "flops": ticket_costs.get("flops"),
              "test_accuracy": result.get("test_accuracy"), "early_stop_test_accuracy": result.get("early_stop_test_accuracy"),
              "early_stop_iteration": summary.get("early_stop_iteration"), "method": result.get("method"),
              "training_speedup": result.get("training_speedup")}
    if result.get("dense_test_accuracy") is not None:
        record["control_dense_test_accuracy"] = result["dense_test_accuracy"]
        if result.get("dense_ticket"):
            dense_dir = Path(result["dense_ticket"]).parent
            dense = _summary(dense_dir) or {}
            record["control_dense_early_stop_iteration"] = dense.get("early_stop_iteration")
            record["control_dense_early_stop_test_accuracy"] = dense.get("early_stop_test_accuracy")
            record["control_dense_metrics"] = str(dense_dir / METRICS)
    return [record]


def _found_records(seed_dir: Path) -> list[dict]:
    """SuperTickets and transfers: the network found (or moved) and its test accuracy."""
    if not (seed_dir / "result.json").exists():
        return []
    result = read_json(seed_dir / "result.json")
    found = result.get("found") or result.get("summary") or result
    density = result.get("density")
    if density is None and result.get("ticket") and Path(result["ticket"]).exists():
        density = read_metadata(result["ticket"])["density"]
    density = 1.0 if density is None else density
    trained = _summary(seed_dir) or {}  # a transfer's training (a SuperTickets search has none of its own)
    record = {"level": 0, "density": density, "percent_remaining": 100 * density, "ticket": result.get("ticket"),
              "flops": found.get("flops"), "test_accuracy": found.get("test_accuracy"),
              "early_stop_test_accuracy": found.get("early_stop_test_accuracy", trained.get("early_stop_test_accuracy")),
              "early_stop_iteration": found.get("early_stop_iteration", trained.get("early_stop_iteration")),
              "method": result.get("method")}
    if result.get("search_examples") is not None:  # SuperTickets: the one training that found it
        record["search_cost"] = {"total_examples": result["search_examples"],
                                 "total_wall_time_seconds": result.get("find_seconds")}
    if (seed_dir / METRICS).exists():
        record["metrics"] = str(seed_dir / METRICS)
    return [record]


READERS: dict[str, Callable[[Path], list[dict]]] = {
    "imp": _imp_records, "demo": _imp_records, "prune": _prune_records, "train": _dense_records,
    "layers": _structured_records, "filters": _structured_records,
    "supertickets": _found_records, "transfer": _found_records,
}


# ---- a run ---------------------------------------------------------------------------------------

def _run_folder(path: Path) -> tuple[Path, dict[int, Path]]:
    if path.name.startswith("seed-") and path.name[5:].isdigit() and (path.parent / "config.json").exists():
        return path.parent, {int(path.name[5:]): path}
    if (path / "config.json").exists():
        return path, seed_dirs(path)
    if is_sweep(path):
        raise TicketlabError(f"{path} is a sweep's folder; give it to `report` (which reads the runs it made), "
                             "not as one run")
    raise TicketlabError(f"{path} is not a ticketlab run directory (no config.json); give runs/<kind>-<hash>")


def method_name(config: dict) -> str:
    """What found the run's tickets: imp, ltr k=..., a PaI method, cts, layers-grasp, ..."""
    kind = config.get("kind", "?")
    sections = config.get("config", {})
    prune = sections.get("prune", {})
    if kind in ("imp", "demo") and prune:
        retrain = prune.get("retrain", "rewind")
        if retrain != "rewind":
            return retrain
        return "imp" if prune.get("rewind_step", "0it") in ("0it", "0ep", "0") else f"ltr k={prune['rewind_step']}"
    if kind == "prune" and sections.get("pai", {}).get("method"):
        return sections["pai"]["method"]
    if kind == "train":
        return "dense"
    return kind


def load_run(path: str | Path, seeds: list[int] | None = None) -> RunResults:
    """Read a run (`<kind>-<hash>` with all its seeds or the given ones, or one `seed-<s>` folder)."""
    run_dir, found = _run_folder(Path(path))
    if seeds is not None:
        found = {s: d for s, d in found.items() if s in seeds}
    config = read_json_file(run_dir / "config.json", "run config")
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise TicketlabError(f"{run_dir / 'config.json'} is not a ticketlab run config; give runs/<kind>-<hash>")
    kind = config.get("kind", "?")
    reader = READERS.get(kind)
    if reader is None:
        raise TicketlabError(f"{run_dir} is a {kind} run, which `report` does not read; it reads "
                             f"{', '.join(sorted(READERS))} runs and sweeps")
    per_seed = {s: records for s, d in found.items() if (records := reader(d))}
    if not per_seed:
        what = "level" if kind in ("imp", "demo") else "seed"
        raise TicketlabError(f"{path} has no finished {what} yet ({kind} run); run or resume it first")
    results = RunResults(run_dir.name, run_dir, config, per_seed, kind=kind, method=method_name(config))
    results.levels = aggregate_levels(per_seed)
    for level in results.levels:
        if level.get("flops") is None and level.get("tickets") and level["tickets"][0] and \
                Path(level["tickets"][0]).exists():
            # FLOPs of the first seed's ticket (seeds differ only in how layers share the density)
            level["flops"] = ticket_counts(level["tickets"][0])["flops"]
    results.sanity = [read_json(p) for p in sorted(run_dir.glob("sanity-*.json"))]
    if not results.trained():
        results.notes.append("No ticket of this run is trained yet: the tables give what was found (density, "
                             "search cost); train them with `ticketlab train-ticket`, `pai` or `sanity`.")
    return results


# ---- sweeps and lists of runs -------------------------------------------------------------------

def is_sweep(path: Path) -> bool:
    return path.name.startswith("sweep-") and (path / "summary.json").exists() and not (path / "config.json").exists()


def run_dirs_in(result, depth: int = 0) -> list[str]:
    """Every `run_dir` a command's result names (a `pai` result names one per cell), in order."""
    found: list[str] = []
    if depth > 4:
        return found
    if isinstance(result, dict):
        if isinstance(result.get("run_dir"), str):
            found.append(result["run_dir"])
        for key, value in result.items():
            if key != "run_dir" and isinstance(value, (dict, list)):
                found += run_dirs_in(value, depth + 1)
    elif isinstance(result, list):
        for value in result:
            found += run_dirs_in(value, depth + 1)
    return found


def sweep_run_dirs(records: list[dict]) -> list[Path]:
    """The run directories finished sweep points made, each once, in the sweep's order; seed folders
    stand for their run."""
    out: list[Path] = []
    for record in records:
        if not record.get("ok"):
            continue
        for name in run_dirs_in(record.get("result")):
            folder = Path(name)
            if folder.name.startswith("seed-") and (folder.parent / "config.json").exists():
                folder = folder.parent
            if (folder / "config.json").exists() and folder not in out:
                out.append(folder)
    return out


def sweep_records(sweep_dir: Path) -> list[dict]:
    return [read_json(p) for p in sorted(sweep_dir.glob("run-*.json"), key=lambda p: int(p.stem.split("-")[1]))]


def load_runs(paths, seeds: list[int] | None = None) -> list[RunResults]:
    """Read every run given; a sweep's folder stands for the finished runs it made."""
    runs: list[RunResults] = []
    for path in map(Path, paths):
        if is_sweep(path):
            folders = sweep_run_dirs(sweep_records(path))
            if not folders:
                raise TicketlabError(f"sweep {path} has no finished run yet; run or resume it first")
            runs += [load_run(folder, seeds) for folder in folders]
        else:
            runs.append(load_run(path, seeds))
    return runs
