"""Where a report came from: the ticketlab version, the date, the command that wrote it and the machine,
stated in every report so that a page read months later says what produced it."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys

import torch

from ticketlab import __version__


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: `ticketlab report ...` from the command line, `python -m ticketlab ...`,
    or the script and its arguments."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return "(interactive Python)"
    program = os.path.basename(argv[0])
    if program == "__main__.py" and os.path.basename(os.path.dirname(argv[0])) == "ticketlab":
        head = ["python", "-m", "ticketlab"]
    elif program in ("", "-c"):
        head = ["python", "-c", "..."]
    else:
        head = [program]
    return shlex.join(head + argv[1:])


def machine() -> str:
    """Host, operating system, CPU count, Python and torch versions, and the GPU when there is one."""
    parts = [platform.node() or "unknown host", f"{platform.system()} {platform.release()} {platform.machine()}",
             f"{os.cpu_count() or '?'} CPUs", f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    return ", ".join(parts)


def report_origin(command: str | None = None, now: datetime.datetime | None = None) -> dict:
    """The provenance block of a report. `command`: what wrote it (default: this process's command line)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return {"ticketlab_version": __version__, "date": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": command or command_line(), "machine": machine()}
