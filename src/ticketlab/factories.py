"""User code named as `package.module:attribute`: importing it with one-line errors, and JSON arguments.

Models (`--model pkg.mod:factory`) and datasets (`--dataset pkg.mod:factory`) of the user's own code
are named this way, so a ticket file can record how to rebuild them.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable

from ticketlab.errors import TicketlabError

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_factory_name(name: str) -> bool:
    return isinstance(name, str) and FACTORY.fullmatch(name) is not None


def import_object(spec: str, what: str) -> Callable:
    """The object `package.module:attribute` names, or one line saying why it cannot be imported."""
    module_name, _, attribute = spec.partition(":")
    try:
        target = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except ImportError as exc:
        raise TicketlabError(f"cannot import {what} {spec!r} ({type(exc).__name__}: {exc}); install its package "
                             "(pip install -e .) or add its folder to PYTHONPATH") from None
    except AttributeError:
        raise TicketlabError(f"{what} {spec!r}: module {module_name} has no attribute {attribute!r}; check the name "
                             "after the colon") from None
    except Exception as exc:  # the user's module failed while importing: say where, in one line
        raise TicketlabError(f"importing {what} {spec!r} failed ({type(exc).__name__}: {exc}); fix that module") from None
    if not callable(target):
        raise TicketlabError(f"{what} {spec!r} is not callable; name a function or class")
    return target


def check_kwargs(kwargs, spec: str) -> dict:
    """Factory keyword arguments must survive JSON, since the ticket file stores them."""
    if kwargs is None:
        return {}
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except ValueError:
            raise TicketlabError(f"keyword arguments for {spec} must be a JSON object, e.g. '{{\"width\": 64}}'; "
                                 f"got {kwargs!r}") from None
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TicketlabError(f"keyword arguments for {spec} must be a JSON object; got {kwargs!r}")
    try:
        if json.loads(json.dumps(kwargs)) != kwargs:
            raise ValueError
    except (TypeError, ValueError):
        raise TicketlabError(f"keyword arguments for {spec} must be plain JSON values (numbers, strings, lists, "
                             f"objects) so the ticket can record them; got {kwargs!r}") from None
    return kwargs
