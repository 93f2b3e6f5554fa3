"""The `ticketlab` command line: a thin client of the command registry (ticketlab.commands).

`parser` generates the argument parser from the registry (and adds the command line's own `sweep`
and `completion`), `app` runs one command and prints its result or its one-line error. The entry
point answers `--version`, and the top-level help once it has been printed before, without importing
either: the registry imports torch, which takes seconds. The help text is kept in the cache folder
(ticketlab.cachedir) under a hash of every ticketlab source file's size and modification time and the
terminal's width, so any change to a command, an option or its help makes it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ticketlab import __version__
from ticketlab.cachedir import cache_root

_DEFERRED = {"HelpFormatter": "ticketlab.cli.parser", "Parser": "ticketlab.cli.parser",
             "build_parser": "ticketlab.cli.parser"}
__all__ = ["HelpFormatter", "Parser", "build_parser", "main"]
TOP_LEVEL_HELP = ([], ["--help"], ["-h"])  # a bare `ticketlab` prints the help too


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        print(f"ticketlab {__version__}")
        return 0
    if argv in TOP_LEVEL_HELP:
        path = help_path()
        with contextlib.suppress(OSError):
            sys.stdout.write(path.read_text())
            return 0
    from ticketlab.cli.app import build_parser, main as run_command  # the registry and torch: for real work
    if argv in TOP_LEVEL_HELP:
        text = build_parser().format_help()
        keep(help_path(), text)
        sys.stdout.write(text)
        return 0
    return run_command(argv)


def help_path() -> Path:
    """Where the top-level help of this installation, at this terminal width, is kept."""
    digest = hashlib.sha256(f"{__version__}:{shutil.get_terminal_size().columns}".encode())
    for path in sorted(Path(__file__).resolve().parents[1].rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return cache_root() / "cli" / f"help-{digest.hexdigest()[:24]}.txt"


def keep(path: Path, text: str) -> None:
    """Write atomically (a temp file renamed into place); a cache folder that cannot be written is skipped."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def __getattr__(name: str):
    if name not in _DEFERRED:
        raise AttributeError(f"module 'ticketlab.cli' has no attribute {name!r}")
    return getattr(importlib.import_module(_DEFERRED[name]), name)
