"""The benchmarks' way to run a ticketlab command in-process and read its --json result."""

from __future__ import annotations

import contextlib
import io
import json
import sys

from ticketlab.cli import main as ticketlab


def run_json(args: list, quiet: bool = False) -> dict:
    """`ticketlab ARGS --json [--quiet]`; exits the benchmark with the command line when it fails."""
    argv = [str(a) for a in args] + ["--json"] + (["--quiet"] if quiet else [])
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = ticketlab(argv)
    if code != 0:
        sys.exit(f"failed: ticketlab {' '.join(argv)}")
    return json.loads(captured.getvalue())
