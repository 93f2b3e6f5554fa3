"""The models ownership works on, as a chain of prunable layers, and permutations of their hidden units.

Supported: the MLPs (lenet_300_100, mlp_*) and Conv-2/4/6, whose prunable layers form one chain
(convs, then the linear layers, the last being the output layer). A hidden unit is a neuron of a
hidden linear layer or a channel of a conv layer; permuting the units of layer l (its weight rows
and bias) together with the matching inputs of layer l+1 leaves the function unchanged, since ReLU
and max-pooling act per unit. At the conv → linear flatten each channel owns a block of H·W
consecutive inputs of the first linear layer, and that block moves with the channel.
ResNets and VGG (BatchNorm, shortcuts) are not supported: they raise a TicketlabError.

A permutation `perm` of a layer maps new unit b to old unit perm[b] (new = old[perm]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ticketlab.errors import TicketlabError


@dataclass(frozen=True)
class Layer:
    weight: str          # parameter name of the weight, e.g. "hidden.0.weight"
    bias: str | None
    kind: str            # "linear" or "conv"
    units: int           # output units (rows / channels)
    in_block: int        # inputs per unit of the previous layer (H·W at a flatten, else 1)


def layer_chain(model: nn.Module) -> list[Layer]:
    from ticketlab.models.convnet import ConvNet
    from ticketlab.models.mlp import MLP
    if isinstance(model, MLP):
        modules = [(f"hidden.{i}", m) for i, m in enumerate(model.hidden)] + [("classifier", model.classifier)]
    elif isinstance(model, ConvNet):
        modules = [(f"features.{i}", m) for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
        modules += [("fc1", model.fc1), ("fc2", model.fc2), ("classifier", model.classifier)]
    else:
        name = getattr(model, "architecture", {}).get("name", type(model).__name__)
        raise TicketlabError(f"ownership signatures support lenet_300_100, mlp_* and conv2/conv4/conv6; {name} is not "
                             "supported (ResNets and VGG have BatchNorm and shortcuts)")
    chain, previous = [], None
    for prefix, module in modules:
        kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
        fan_in = module.weight.shape[1]
        in_block = 1 if previous is None or fan_in == previous else fan_in // previous
        chain.append(Layer(f"{prefix}.weight", f"{prefix}.bias" if module.bias is not None else None, kind,
                           module.weight.shape[0], in_block))
        previous = module.weight.shape[0]
    return chain


def layer_index(chain: list[Layer], name: str) -> int:
    for i, layer in enumerate(chain):
        if layer.weight == name:
            return i
    raise TicketlabError(f"{name} is not a prunable layer of this model; layers: {', '.join(l.weight for l in chain)}")


def expand(perm: torch.Tensor, block: int) -> torch.Tensor:
    """A unit permutation as a permutation of the next layer's input columns (blocks of `block`)."""
    if block == 1:
        return perm
    return (perm[:, None] * block + torch.arange(block)[None, :]).reshape(-1)


def permute_rows(t: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    return t if perm is None else t[perm]


def permute_inputs(t: torch.Tensor, perm: torch.Tensor | None, block: int) -> torch.Tensor:
    return t if perm is None else t[:, expand(perm, block)]


def permute_state(state: dict[str, torch.Tensor], chain: list[Layer], perms: dict[int, torch.Tensor]) -> dict:
    """Apply unit permutations {hidden layer index: perm} to a state dict or a dict of mask tensors
    (entries it does not hold, e.g. biases of a mask, are skipped)."""
    out = dict(state)
    for i, layer in enumerate(chain):
        row = perms.get(i)
        col = perms.get(i - 1) if i > 0 else None
        if layer.weight in out:
            out[layer.weight] = permute_inputs(permute_rows(out[layer.weight], row), col, layer.in_block)
        if layer.bias is not None and layer.bias in out:
            out[layer.bias] = permute_rows(out[layer.bias], row)
    return out
