"""From trained logits to the final hard mask: exactly round(κ·d) weights, ranked globally.

The highest logits are kept (index top-k via `pruning.keep_top_k`, ties to the lower position, so
the count is exact even when logits tie); `invert` keeps the lowest ones instead, for the sanity
check that a method's ranking matters.
"""

from __future__ import annotations

import torch

from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.pruning import keep_top_k


def extract_mask(logits: dict[str, torch.Tensor], count: int, invert: bool = False) -> Mask:
    """Keep the `count` highest logits over all tensors (the lowest with `invert`)."""
    for name, values in logits.items():
        if not bool(torch.isfinite(values).all()):
            raise TicketlabError(f"CTS logits of {name} are not finite, so they cannot be ranked: the search "
                                 "diverged; lower the learning rate or check the data for NaN/inf")
    keys = {name: -values if invert else values for name, values in logits.items()}
    everything = Mask({name: torch.ones(values.shape, dtype=torch.bool) for name, values in logits.items()})
    return keep_top_k(keys, everything, count)
