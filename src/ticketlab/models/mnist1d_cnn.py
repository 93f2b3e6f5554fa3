"""`mnist1d_cnn`: a small 1-D conv net for MNIST-1D (Greydanus 2020), inputs of shape (1, 40).

Three Conv1d + ReLU layers of 32 channels (kernel 5, 3, 3), each stride 2 with "same" padding
(kernel // 2), so the length goes 40 -> 20 -> 10 -> 5; then flatten and the `classifier` Linear.
Any (C, L) input works: each stride-2 conv maps L to ceil(L / 2), never below 1.
Weights: Kaiming normal (fan_in, ReLU), biases zero (see initialization.py).
"""

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.registry import register_model

CHANNELS = 32
KERNEL_SIZES = (5, 3, 3)


def conv_output_length(length: int, kernel_size: int, stride: int = 2) -> int:
    padding = kernel_size // 2
    return (length + 2 * padding - kernel_size) // stride + 1


class Mnist1dCNN(nn.Module):
    def __init__(self, in_channels: int, length: int, num_classes: int):
        super().__init__()
        convs = []
        for kernel_size in KERNEL_SIZES:
            convs.append(nn.Conv1d(in_channels, CHANNELS, kernel_size, stride=2, padding=kernel_size // 2))
            in_channels, length = CHANNELS, conv_output_length(length, kernel_size)
        self.convs = nn.ModuleList(convs)
        self.classifier = nn.Linear(CHANNELS * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.classifier(x.flatten(1))


@register_model("mnist1d_cnn", r"mnist1d_cnn",
                "small 1-D CNN for MNIST-1D: three stride-2 Conv1d layers of 32 channels, then Linear",
                examples=("mnist1d_cnn",))
def mnist1d_cnn(match, input_shape, num_classes):
    if len(input_shape) != 2:
        raise TicketlabError(f"model mnist1d_cnn needs 1-D signals of input_shape (channels, length) such as "
                             f"(1, 40); got {tuple(input_shape)}")
    channels, length = input_shape
    return Mnist1dCNN(channels, length, num_classes)
