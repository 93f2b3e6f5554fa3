"""Conv-2, Conv-4 and Conv-6 of the LTH paper (Frankle & Carbin 2019, Figure 2), VGG-like small nets.

Stages of two 3x3 convs (padding 1, with bias, ReLU) followed by a 2x2 max-pool:
conv2 = [64, 64, pool], conv4 = [64, 64, pool, 128, 128, pool], conv6 adds [256, 256, pool].
Then FC 256 + ReLU, FC 256 + ReLU, and the `classifier` Linear. Channels and image size follow
input_shape (3x32x32 CIFAR, 1x28x28 Fashion-MNIST); the first FC's input size is computed from it.
Weights: Kaiming normal (fan_in, ReLU), biases zero (see initialization.py).
"""

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.registry import register_model, require_image_shape

STAGE_WIDTHS = {2: (64,), 4: (64, 128), 6: (64, 128, 256)}
FC_WIDTH = 256


class ConvNet(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], stage_widths: tuple[int, ...], num_classes: int):
        super().__init__()
        channels, height, width = input_shape
        layers: list[nn.Module] = []
        for stage_width in stage_widths:
            layers += [nn.Conv2d(channels, stage_width, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(stage_width, stage_width, 3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels, height, width = stage_width, height // 2, width // 2
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(channels * height * width, FC_WIDTH)
        self.fc2 = nn.Linear(FC_WIDTH, FC_WIDTH)
        self.classifier = nn.Linear(FC_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.classifier(x)


def _register(depth: int) -> None:
    name = f"conv{depth}"
    widths = STAGE_WIDTHS[depth]

    @register_model(name, name, f"LTH paper Conv-{depth}: {depth} 3x3 convs {'/'.join(map(str, widths))}, "
                    f"a max-pool every two, FC 256-256-classes", examples=(name,))
    def build(match, input_shape, num_classes):
        channels, height, width = require_image_shape(name, input_shape)
        min_side = 2 ** len(widths)  # each max-pool halves the image, which must not vanish
        if height < min_side or width < min_side:
            raise TicketlabError(f"model {name} needs images of at least {min_side}x{min_side} "
                                 f"({len(widths)} max-pools); got input_shape {tuple(input_shape)}")
        return ConvNet((channels, height, width), widths, num_classes)


for _depth in STAGE_WIDTHS:
    _register(_depth)
