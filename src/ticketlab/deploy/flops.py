"""Parameters, non-zeros and FLOPs per example of any model, counting only the live weights of a mask.

FLOPs follow the usual convention: one multiply-add = 2 FLOPs. A Linear layer does one
multiply-add per live weight per example; a convolution does one per live weight per output
position (the output sizes come from one traced forward pass with hooks). BatchNorm, biases,
activations and pooling are cheap next to those and are counted as one FLOP per output element
in `other_flops`, reported apart so the prunable part is not blurred by them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture
from ticketlab.ticket import load_ticket

COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
ELEMENTWISE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)


def _weight_name(prefix: str) -> str:
    return f"{prefix}.weight" if prefix else "weight"


@torch.no_grad()
def output_positions(model: nn.Module, input_shape) -> dict[str, int]:
    """Output positions per example of each Linear/Conv module (1 for Linear, H·W for Conv2d), and the
    output elements of cheap per-element modules (keyed 'elementwise:<name>')."""
    positions: dict[str, int] = {}
    hooks = []
    for prefix, module in model.named_modules():
        if isinstance(module, COUNTED):
            def hook(mod, inputs, output, prefix=prefix):
                positions[prefix] = math.prod(output.shape[2:]) if output.dim() > 2 else 1
            hooks.append(module.register_forward_hook(hook))
        elif isinstance(module, ELEMENTWISE):
            def hook(mod, inputs, output, prefix=prefix):
                positions[f"elementwise:{prefix}"] = output[0].numel()
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape, dtype=next(model.parameters()).dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return positions


def count(model: nn.Module, input_shape, mask: Mask | None = None) -> dict:
    """{parameters, nonzero_parameters, prunable, live_prunable, flops, dense_flops, other_flops, layers}.

    `flops` counts only live weights (the mask's, or the non-zero weights without a mask);
    `dense_flops` is the same network with every weight live.
    """
    positions = output_positions(model, input_shape)
    params = dict(model.named_parameters())
    layers = {}
    flops = dense_flops = 0
    for prefix, module in model.named_modules():
        if not isinstance(module, COUNTED):
            continue
        name = _weight_name(prefix)
        weight = params[name]
        live = int(mask[name].sum()) if mask is not None and name in mask.tensors else int(torch.count_nonzero(weight))
        per_position = positions.get(prefix, 0)
        layer_flops = 2 * live * per_position
        bias_flops = per_position * module.weight.shape[0] if module.bias is not None else 0
        layers[name] = {"weights": weight.numel(), "live": live, "flops": layer_flops + bias_flops,
                        "dense_flops": 2 * weight.numel() * per_position + bias_flops}
        flops += layers[name]["flops"]
        dense_flops += layers[name]["dense_flops"]
    other = sum(v for k, v in positions.items() if k.startswith("elementwise:"))
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    prunable = sum(layer["weights"] for layer in layers.values())
    live = sum(layer["live"] for layer in layers.values())
    if mask is not None:  # a masked model's pruned weights count as zeros even if they are not yet zeroed
        nonzero = sum(int(torch.count_nonzero(p * mask[n])) if n in mask.tensors else int(torch.count_nonzero(p))
                      for n, p in model.named_parameters())
    return {"parameters": total, "nonzero_parameters": nonzero, "prunable": prunable, "live_prunable": live,
            "flops": flops + other, "dense_flops": dense_flops + other, "other_flops": other, "layers": layers}


def ticket_counts(path) -> dict:
    """`count` for a ticket file: its architecture with its mask (reports use the FLOPs and parameters)."""
    ticket = load_ticket(path)
    model = model_from_architecture(ticket.architecture)
    return count(model, tuple(ticket.architecture["input_shape"]), ticket.mask)
