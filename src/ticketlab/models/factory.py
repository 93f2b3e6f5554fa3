"""Models of the user's own code: `package.module:function` names an importable factory of an nn.Module.

A ticket of such a model records the factory and its JSON keyword arguments in its architecture, so
every command rebuilds the model exactly as the registry's models are rebuilt from their names. A
factory may take `input_shape` and `num_classes` (it gets them when its signature names them), and
initializes its model itself; ticketlab seeds the RNG around the call.
"""

from __future__ import annotations

import inspect

from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.factories import import_object


def build_from_factory(spec: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> nn.Module:
    factory = import_object(spec, "model factory")
    arguments = dict(kwargs)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name, value in (("input_shape", tuple(input_shape)), ("num_classes", num_classes)):
        if (name in parameters or takes_any) and name not in arguments:
            arguments[name] = value
    try:
        model = factory(**arguments)
    except TypeError as exc:
        raise TicketlabError(f"model factory {spec} does not take these arguments ({exc}); give the keyword arguments "
                             "it needs") from None
    if not isinstance(model, nn.Module):
        raise TicketlabError(f"model factory {spec} returned a {type(model).__name__}, not a torch nn.Module")
    return model
