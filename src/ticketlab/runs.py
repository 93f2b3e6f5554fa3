"""Run directories: `<runs-dir>/<kind>-<hash>/seed-<s>/...`, named by the config's identity hash.

The directory is created only once the inputs have been checked, holds the full config as
config.json, and refuses to mix results with a different config.
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.config import config_hash, identity_values, to_dict
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, remove_stale_temporaries, write_json


def run_dir_for(runs_dir: str | Path, kind: str, configs: dict[str, object]) -> Path:
    return Path(runs_dir) / f"{kind}-{config_hash(kind, configs)}"


def open_run(runs_dir: str | Path, kind: str, configs: dict[str, object]) -> Path:
    """Create (or reopen) the run directory for this config; refuse one that holds another config."""
    run_dir = run_dir_for(runs_dir, kind, configs)
    config_file = run_dir / "config.json"
    wanted = {"kind": kind, "identity": {k: _jsonable(v) for k, v in identity_values(configs).items()}}
    if config_file.exists():
        stored = read_json(config_file)
        if {"kind": stored.get("kind"), "identity": stored.get("identity")} != wanted:
            raise TicketlabError(f"{run_dir} holds a run with another config; move it away or use another --runs-dir")
        remove_stale_temporaries(run_dir)  # a resumed run: clear what killed writers left behind
    else:
        write_json(config_file, {**wanted, "config": to_dict(configs)})
    return run_dir


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value
