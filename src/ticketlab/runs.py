"""Run directories: `<runs-dir>/<kind>-<hash>/seed-<s>/...`, named by the config's identity hash.

The directory is created only once the inputs have been checked, holds the full config as
config.json, and refuses to mix results with a different config. A process working in a run holds
an exclusive OS lock on it (`.lock`, flock) until it exits: a second process on the same run stops
with one line naming the holder, and the kernel drops the lock of a killed holder, so a resume is
never blocked by a stale lock.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import sys
from pathlib import Path

from ticketlab import distributed
from ticketlab.config import config_hash, identity_values, to_dict
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, remove_stale_temporaries, write_json

LOCK = ".lock"
_held: dict[Path, int] = {}  # run directory -> open lock file descriptor, kept for the process's lifetime
# Called once, when this process first opens a run: every check has passed and the work begins (the
# command line announces its recipe then, so a refused command prints its one error line only).
on_work_start: list = []


def run_dir_for(runs_dir: str | Path, kind: str, configs: dict[str, object]) -> Path:
    return Path(runs_dir) / f"{kind}-{config_hash(kind, configs)}"


def open_run(runs_dir: str | Path, kind: str, configs: dict[str, object]) -> Path:
    """Create (or reopen) the run directory for this config; refuse one that holds another config."""
    run_dir = run_dir_for(runs_dir, kind, configs)
    config_file = run_dir / "config.json"
    wanted = {"kind": kind, "identity": {k: _jsonable(v) for k, v in identity_values(configs).items()}}
    if config_file.exists():
        stored = read_json(config_file)
        if not isinstance(stored, dict) or {"kind": stored.get("kind"), "identity": stored.get("identity")} != wanted:
            raise TicketlabError(f"{run_dir} holds a run with another config; move it away or use another --runs-dir")
        open_dir(run_dir)
    else:
        open_dir(run_dir)
        write_json(config_file, {**wanted, "config": to_dict(configs)})
    return run_dir


def open_dir(run_dir: str | Path) -> Path:
    """Lock a run directory for this process (creating it) and clear what killed writers left behind."""
    run_dir = Path(run_dir)
    lock_run(run_dir)
    remove_stale_temporaries(run_dir)
    while on_work_start:
        on_work_start.pop(0)()
    return run_dir


def lock_run(run_dir: Path) -> None:
    """Hold an exclusive lock on `run_dir` until this process exits; refuse when another process holds it.

    Seed workers run inside their parent's lock (the holder recorded is their parent), and in a
    data-parallel run only rank 0, which writes the files, takes it.
    """
    key = run_dir.resolve()
    if key in _held or not distributed.is_main():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        if holder.get("pid") == os.getppid():
            return  # a seed worker of the process that holds the run
        raise TicketlabError(
            f"run {run_dir} is in use by process {holder.get('pid', '?')} ({holder.get('command', 'ticketlab')}, "
            f"since {holder.get('since', '?')}); wait for it to finish, or stop it and run the command again to resume"
        ) from None
    os.ftruncate(fd, 0)
    holder = {"pid": os.getpid(), "command": " ".join(["ticketlab", *sys.argv[1:]])[:200],
              "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    _held[key] = fd


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except ValueError:
        return {}


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value
