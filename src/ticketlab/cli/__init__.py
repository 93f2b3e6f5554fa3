"""The `ticketlab` command line: a thin client of the command registry (ticketlab.commands).

`parser` generates the argument parser from the registry (and adds the command line's own `sweep`
and `completion`), `app` runs one command and prints its result or its one-line error. The entry
point answers `--version` before importing either: the registry imports torch, which takes seconds.
"""

from __future__ import annotations

import importlib
import sys

from ticketlab import __version__

_DEFERRED = {"HelpFormatter": "ticketlab.cli.parser", "Parser": "ticketlab.cli.parser",
             "build_parser": "ticketlab.cli.parser"}
__all__ = ["HelpFormatter", "Parser", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        print(f"ticketlab {__version__}")
        return 0
    from ticketlab.cli.app import main as run_command  # the command registry and torch, only for real work
    return run_command(argv)


def __getattr__(name: str):
    if name not in _DEFERRED:
        raise AttributeError(f"module 'ticketlab.cli' has no attribute {name!r}")
    return getattr(importlib.import_module(_DEFERRED[name]), name)
