"""Filter tickets: the structured baseline layer tickets are compared with (docs/methods.md, Filter tickets).

Filters are removed where that keeps every shape valid without touching the residual stream: the
internal channels of each BasicBlock (conv1's filters, bn1's entries, conv2's input channels). A
filter's score is the mean importance (see layer_tickets.weight_importance) of its conv1 weights —
the mean, so filters of different fan-in compete on equal terms in one global ranking. The lowest
are removed, every block keeping at least one, and the network is rebuilt physically narrower
(an architecture spec with "shapes") holding θ₀ for everything that remains.

Matching a layer ticket (`removals_to_match`): filters go in score order until the narrowed network
costs at most the layer ticket's FLOPs per example, parameters or convolution filters: the fewest
removals that get there, so the filter ticket is never larger than the ticket it is compared with and
at most one filter's worth smaller. Removing one more filter never raises a cost, so a bisection over
the removal count finds it.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.config import FILTER_MATCHES, derive_seed
from ticketlab.deploy.flops import count
from ticketlab.errors import TicketlabError
from ticketlab.layers.layer_tickets import check_resnet, weight_importance
from ticketlab.models import model_from_architecture
from ticketlab.models.resize import module_shape

FILTER_CRITERIA = ("snip", "grasp", "magnitude", "random")


def conv_filters(model: nn.Module) -> int:
    """Number of convolution filters (output channels over every Conv layer)."""
    return sum(m.out_channels for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d)))


def blocks(model) -> list[tuple[str, nn.Module]]:
    return [(f"stages.{s}.{i}", block) for s, stage in enumerate(model.stages) for i, block in enumerate(stage)]


def filter_scores(model: nn.Module, data, criterion: str, seed: int = 0, score_batches: int = 1,
                  batch_size: int = 128, grasp_batches: str | None = None) -> dict[str, torch.Tensor]:
    """Per block (by path), one score per internal filter (higher = keep)."""
    model = check_resnet(model)
    if criterion not in FILTER_CRITERIA:
        raise TicketlabError(f"unknown filter criterion {criterion!r}; known: {', '.join(FILTER_CRITERIA)}")
    if criterion == "random":
        generator = torch.Generator().manual_seed(derive_seed(seed, "filter-ticket-random"))
        return {path: torch.rand(block.conv1.out_channels, generator=generator, dtype=torch.float64)
                for path, block in blocks(model)}
    importance = weight_importance(model, data, criterion, seed, score_batches, batch_size, grasp_batches)
    return {path: importance[f"{path}.conv1.weight"].flatten(1).mean(1) for path, _ in blocks(model)}


def choose_filters(scores: dict[str, torch.Tensor], remove: int) -> dict[str, list[int]]:
    """Kept filter indices per block after removing the `remove` lowest-scored, each block keeping one."""
    removable = sum(len(s) - 1 for s in scores.values())
    if not 0 <= remove <= removable:
        raise TicketlabError(f"cannot remove {remove} filters: at most {removable} can go with one kept per block")
    ranked = sorted(((float(v), path, c) for path, s in scores.items() for c, v in enumerate(s)), key=lambda t: (t[0], t[1], t[2]))
    left = {path: len(s) for path, s in scores.items()}
    dropped: set[tuple[str, int]] = set()
    for _, path, channel in ranked:
        if len(dropped) == remove:
            break
        if left[path] > 1:
            dropped.add((path, channel))
            left[path] -= 1
    return {path: [c for c in range(len(s)) if (path, c) not in dropped] for path, s in scores.items()}


def narrow(model: nn.Module, kept: dict[str, list[int]]) -> nn.Module:
    """The network with only the kept internal filters of each block, θ₀ sliced exactly."""
    model = check_resnet(model)
    shapes = {}
    for path, channels in kept.items():
        block = model.get_submodule(path)
        if len(channels) == block.conv1.out_channels:
            continue
        for name, key in (("conv1", "out_channels"), ("bn1", "num_features"), ("conv2", "in_channels")):
            entry = module_shape(getattr(block, name))
            entry[key] = len(channels)
            shapes[f"{path}.{name}"] = entry
    small = model_from_architecture({**model.architecture, "shapes": shapes}) if shapes else \
        model_from_architecture(model.architecture)
    state = {}
    for key, value in model.state_dict().items():
        path, _, rest = key.rpartition(".")
        block_path, _, layer = path.rpartition(".")
        index = torch.tensor(kept.get(block_path, []), dtype=torch.long)
        if block_path in kept and layer in ("conv1", "bn1") and value.dim() >= 1 and rest != "num_batches_tracked":
            value = value.index_select(0, index)
        elif block_path in kept and layer == "conv2" and rest == "weight":
            value = value.index_select(1, index)
        state[key] = value.clone()
    small.load_state_dict(state)
    return small


def structure_cost(model: nn.Module, input_shape, match: str) -> int:
    """What filter tickets are matched on: FLOPs per example, parameters, or convolution filters."""
    if match not in FILTER_MATCHES:
        raise TicketlabError(f"unknown match {match!r}; known: {', '.join(FILTER_MATCHES)}")
    if match == "filters":
        return conv_filters(model)
    counted = count(model, input_shape)
    return int(counted["flops" if match == "flops" else "parameters"])


def removals_to_match(model: nn.Module, scores: dict[str, torch.Tensor], match: str, target: int,
                      input_shape) -> tuple[int, int]:
    """The fewest removals in score order whose narrowed network costs at most `target` (by `match`),
    and that cost; one line when even the narrowest network (one filter per block) costs more."""
    removable = sum(len(s) - 1 for s in scores.values())

    def cost(remove: int) -> int:
        return structure_cost(narrow(model, choose_filters(scores, remove)), input_shape, match)

    narrowest = cost(removable)
    if narrowest > target:
        raise TicketlabError(f"no filter ticket costs at most {target:,} {match}: with one filter per block it "
                             f"still costs {narrowest:,}")
    low, high = 0, removable  # cost(high) ≤ target
    while low < high:
        middle = (low + high) // 2
        if cost(middle) <= target:
            high = middle
        else:
            low = middle + 1
    return low, cost(low)
