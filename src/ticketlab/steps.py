"""Training lengths and points in training written as "40ep" (epochs) or "500it" (iterations)."""

from __future__ import annotations

import re

from ticketlab.errors import TicketlabError

_STEP = re.compile(r"^\s*(\d+)\s*(ep|it)\s*$")


def to_iterations(spec: str | int, iterations_per_epoch: int, what: str = "step") -> int:
    """Convert "40ep" / "500it" (or a bare integer of iterations) to a number of iterations."""
    if isinstance(spec, int):
        return spec
    text = str(spec)
    if text.strip() == "0":  # zero needs no unit
        return 0
    match = _STEP.match(text)
    if not match:
        raise TicketlabError(f"bad {what} {text!r}: write a whole number followed by 'ep' (epochs) or 'it' (iterations), e.g. 40ep or 500it")
    count, unit = int(match.group(1)), match.group(2)
    return count * iterations_per_epoch if unit == "ep" else count


def check_step(spec: str, what: str) -> str:
    """Validate the syntax early (before any work starts); returns the spec unchanged."""
    to_iterations(spec, 1, what)
    return spec


def to_iteration_list(specs: str, iterations_per_epoch: int, what: str) -> list[int]:
    """Comma-separated steps, e.g. milestones "80ep,120ep"."""
    return [to_iterations(s, iterations_per_epoch, what) for s in specs.split(",") if s.strip()]
