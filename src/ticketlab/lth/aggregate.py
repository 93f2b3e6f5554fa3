"""Replicates: mean ± std over seeds of per-level records, and reading finished runs back from disk."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.files import read_json
from ticketlab.ticket import read_metadata

# Per-level values that are averaged over seeds (others are copied from the first seed).
MAX_SEED = 2 ** 63 - 1
MAX_SEEDS = 1000  # replicates: each one a full run
AVERAGED = ("test_accuracy", "early_stop_iteration", "early_stop_test_accuracy", "val_accuracy",
            "final_train_accuracy", "wall_time_seconds")


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate_levels(per_seed: dict[int, list[dict]]) -> list[dict]:
    """One record per level with the mean of each averaged value, its `<key>_std` and `seeds`."""
    seeds = sorted(per_seed)
    by_level: dict[int, list[dict]] = {}
    for seed in seeds:
        for record in per_seed[seed]:
            by_level.setdefault(record["level"], []).append(record)
    out = []
    for level in sorted(by_level):
        records = by_level[level]
        row = dict(records[0])
        keys = [k for k in records[0] if k in AVERAGED or k.startswith("control_")]
        for key in keys:
            if isinstance(records[0][key], (int, float)) or records[0][key] is None:
                row[key], row[f"{key}_std"] = mean_std([r.get(key) for r in records])
        row["seeds"] = len(records)
        row["tickets"] = [r.get("ticket") for r in records]
        out.append(row)
    return out


def parse_levels(spec: str, available: list[int]) -> list[int]:
    """'0-5,8' → [0, 1, 2, 3, 4, 5, 8]; 'all' → every available level. Unknown levels are an error."""
    if spec.strip() == "all":
        return sorted(available)
    chosen: set[int] = set()
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise TicketlabError(f"bad level list {spec!r}: write levels like 0-5,8 or all")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if low > high:
            raise TicketlabError(f"bad level range {part.strip()!r} in {spec!r}: write the lower level first, e.g. 2-5")
        if high > max(available, default=-1):  # before building the range: 0-10**12 is not a list to make
            raise TicketlabError(f"level(s) [{high}] are not finished in this run; it has levels {sorted(available)}")
        chosen.update(range(low, high + 1))
    missing = sorted(chosen - set(available))
    if missing:
        raise TicketlabError(f"level(s) {missing} are not finished in this run; it has levels {sorted(available)}")
    return sorted(chosen)


def parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise TicketlabError(f"bad seed list {spec!r}: write whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise TicketlabError(f"bad seed list {spec!r}: give distinct seeds, e.g. 0,1,2")
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise TicketlabError(f"bad seed list {spec!r}: seeds are whole numbers from 0 to {MAX_SEED}")
    if len(seeds) > MAX_SEEDS:
        raise TicketlabError(f"bad seed list: {len(seeds)} seeds, more than the limit of {MAX_SEEDS}")
    return seeds


def seed_dirs(run_dir: Path) -> dict[int, Path]:
    return {int(p.name.split("-", 1)[1]): p for p in sorted(run_dir.glob("seed-*")) if p.name.split("-", 1)[1].isdigit()}


def level_records(seed_dir: Path) -> list[dict]:
    """Finished levels of one seed, with their controls' results as `control_<kind>_<key>` values."""
    records = []
    for level_dir in sorted(seed_dir.glob("level-*"), key=lambda p: int(p.name.split("-")[1])):
        summary_path, ticket_path = level_dir / "summary.json", level_dir / "ticket.safetensors"
        if not (summary_path.exists() and ticket_path.exists()):
            continue
        meta = read_metadata(ticket_path)
        record = {"level": int(level_dir.name.split("-")[1]), "density": meta["density"],
                  "percent_remaining": 100 * meta["density"], "ticket": str(ticket_path),
                  "search_cost": meta.get("search_cost"), **read_json(summary_path)}
        for control_dir in sorted(level_dir.glob("control-*")):
            if (control_dir / "summary.json").exists():
                kind = control_dir.name[len("control-"):]
                control = read_json(control_dir / "summary.json")
                for key in ("test_accuracy", "early_stop_iteration", "early_stop_test_accuracy"):
                    record[f"control_{kind}_{key}"] = control[key]
        records.append(record)
    return records
