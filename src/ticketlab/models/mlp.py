"""Fully connected networks: `mlp_<h1>_<h2>_...` and the LTH paper's LeNet-300-100.

The input is flattened, so any input_shape works (784 inputs for 1x28x28 images). Hidden
layers are Linear + ReLU; the last layer, `classifier`, is a plain Linear producing logits.
Weights: Kaiming normal (fan_in, ReLU), biases zero (see initialization.py).
"""

import math

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.registry import register_model


class MLP(nn.Module):
    def __init__(self, num_inputs: int, hidden_widths: tuple[int, ...], num_classes: int):
        super().__init__()
        widths = (num_inputs, *hidden_widths)
        self.hidden = nn.ModuleList(nn.Linear(w_in, w_out) for w_in, w_out in zip(widths, widths[1:]))
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.classifier(x)


def _build_mlp(name: str, hidden_widths: tuple[int, ...], input_shape, num_classes) -> MLP:
    if any(width < 1 for width in hidden_widths):
        raise TicketlabError(f"model {name}: hidden widths must be positive ints such as mlp_300_100")
    return MLP(math.prod(input_shape), hidden_widths, num_classes)


@register_model("lenet_300_100", r"lenet_300_100",
                "LeNet-300-100 of the LTH paper: the same model as mlp_300_100",
                examples=("lenet_300_100",))
def lenet_300_100(match, input_shape, num_classes):
    return _build_mlp(match.group(0), (300, 100), input_shape, num_classes)


@register_model("mlp_<h1>_<h2>_...", r"mlp((?:_\d+)+)",
                "fully connected net on the flattened input; ReLU after each hidden layer of the given widths",
                examples=("mlp_300_100", "mlp_1024"))
def mlp(match, input_shape, num_classes):
    widths = tuple(int(part) for part in match.group(1).strip("_").split("_"))
    return _build_mlp(match.group(0), widths, input_shape, num_classes)
