"""CIFAR VGG with BatchNorm: `vgg11`, `vgg16`, `vgg19` (Simonyan & Zisserman configs A, D, E).

Conv stack: 3x3 conv (padding 1, no bias: the BatchNorm after it has one) + BN + ReLU, with a
2x2 max-pool ('M') after each group. Then, as in the CIFAR variant (open_lth's cifar_vgg), a
global average pool and one `classifier` Linear(512, num_classes) — no large FC layers.

Small images: five pools would take 28x28 below 1x1 (28-14-7-3-1-0). Pool sizes are fixed at
build time from input_shape: a side already at 1 is not pooled (kernel 1 on that side) and a
pool on a 1x1 map becomes nn.Identity, which keeps state_dict keys the same for every input
size. The final adaptive average pool makes any remaining map 1x1 (32x32 already is).
Weights: Kaiming normal (fan_in, ReLU); BatchNorm weight 1, bias 0 (see initialization.py).
"""

import torch
from torch import nn

from ticketlab.models.registry import register_model, require_image_shape

CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def _max_pool(height: int, width: int) -> tuple[nn.Module, int, int]:
    """A 2x2 max-pool that never pools a side of size 1; the pool and the new map size."""
    kernel = (2 if height > 1 else 1, 2 if width > 1 else 1)
    if kernel == (1, 1):
        return nn.Identity(), height, width
    return nn.MaxPool2d(kernel), height // kernel[0], width // kernel[1]


class VGG(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], config: tuple, num_classes: int):
        super().__init__()
        channels, height, width = input_shape
        layers: list[nn.Module] = []
        for item in config:
            if item == "M":
                pool, height, width = _max_pool(height, width)
                layers.append(pool)
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _register(depth: int) -> None:
    name = f"vgg{depth}"
    num_convs = sum(1 for item in CONFIGS[depth] if item != "M")

    @register_model(name, name, f"CIFAR VGG-{depth} with BatchNorm: {num_convs} 3x3 convs, 5 max-pools, "
                    "global average pool, Linear(512, classes)", examples=(name,))
    def build(match, input_shape, num_classes):
        return VGG(require_image_shape(name, input_shape), CONFIGS[depth], num_classes)


for _depth in CONFIGS:
    _register(_depth)
