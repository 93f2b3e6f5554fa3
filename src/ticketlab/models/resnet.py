"""CIFAR ResNets (He et al. 2016, section 4.2): `resnet<D>` with D = 6n+2, optional width `_w<W>`.

Layout: 3x3 stem conv (no bias) + BN + ReLU at width W, then three stages of n BasicBlocks at
widths W, 2W, 4W; the first block of stages 2 and 3 halves the image (stride 2). Global average
pool, then the `classifier` Linear. Default W = 16 (resnet20 has 0.27M parameters).

A BasicBlock is conv-BN-ReLU-conv-BN, plus its shortcut, then ReLU. The shortcut is the identity
when the block keeps shape, else a 1x1 conv (no bias, strided) + BN projection.

Layer tickets remove whole residual blocks, so the block structure is explicit:
`model.stages` is an nn.ModuleList of nn.Sequential of blocks, each with `has_identity_shortcut`
(only those blocks can be removed without changing shapes), and any blocks-per-stage count can be
built by name: `resnet_blocks_3_2_3` (see `resnet_name`). Any (C, H, W) image works: strided
convs with padding never shrink a side below 1.

Weights: Kaiming normal (fan_in, ReLU); BatchNorm weight 1, bias 0 (see initialization.py).
"""

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.registry import known_models_hint, register_model, require_image_shape

DEFAULT_WIDTH = 16


class BasicBlock(nn.Module):
    def __init__(self, in_width: int, out_width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_width)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_width)
        self.has_identity_shortcut = stride == 1 and in_width == out_width
        if self.has_identity_shortcut:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_width, out_width, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stage i has `blocks_per_stage[i]` blocks at width base_width * 2**i; stages after the first downsample."""

    def __init__(self, in_channels: int, num_classes: int, blocks_per_stage=(3, 3, 3),
                 base_width: int = DEFAULT_WIDTH):
        super().__init__()
        if not blocks_per_stage or any(n < 1 for n in blocks_per_stage) or base_width < 1:
            raise TicketlabError(f"a ResNet needs at least one block in every stage and a positive width; "
                                 f"got blocks_per_stage={tuple(blocks_per_stage)}, width={base_width}")
        self.blocks_per_stage = tuple(blocks_per_stage)
        self.base_width = base_width
        self.stem_conv = nn.Conv2d(in_channels, base_width, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(base_width)

        stages = []
        in_width = base_width
        for stage_index, num_blocks in enumerate(self.blocks_per_stage):
            out_width = base_width * 2**stage_index
            first_stride = 1 if stage_index == 0 else 2
            blocks = [BasicBlock(in_width if i == 0 else out_width, out_width, first_stride if i == 0 else 1)
                      for i in range(num_blocks)]
            stages.append(nn.Sequential(*blocks))
            in_width = out_width
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(in_width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem_conv(x)))
        for stage in self.stages:
            x = stage(x)
        return self.classifier(x.mean(dim=(2, 3)))  # global average pool


def resnet_name(blocks_per_stage, base_width: int = DEFAULT_WIDTH) -> str:
    """The registry name that builds a CifarResNet with these blocks per stage and width.

    Use it to rebuild a shallower network after removing blocks:
    `create_model(resnet_name((3, 2, 3)), ...)` gives "resnet_blocks_3_2_3".
    """
    blocks = tuple(blocks_per_stage)
    if len(blocks) == 3 and len(set(blocks)) == 1:
        name = f"resnet{6 * blocks[0] + 2}"
    else:
        name = "resnet_blocks_" + "_".join(str(n) for n in blocks)
    return name if base_width == DEFAULT_WIDTH else f"{name}_w{base_width}"


def _width(match, name: str) -> int:
    width = int(match.group("width")) if match.group("width") else DEFAULT_WIDTH
    if width < 1:
        raise TicketlabError(f"model {name}: width must be a positive int such as resnet20_w32")
    return width


@register_model("resnet<D>[_w<W>]", r"resnet(?P<depth>\d+)(?:_w(?P<width>\d+))?",
                "CIFAR ResNet of depth D = 6n+2 (n BasicBlocks per stage), stage widths W, 2W, 4W (W=16 by default)",
                examples=("resnet20", "resnet56", "resnet110", "resnet20_w32"))
def resnet(match, input_shape, num_classes):
    name = match.group(0)
    depth = int(match.group("depth"))
    if depth < 8 or (depth - 2) % 6:
        raise TicketlabError(f"model {name}: ResNet depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110, ...); "
                             f"got {depth}; {known_models_hint()}")
    channels, _, _ = require_image_shape(name, input_shape)
    n = (depth - 2) // 6
    return CifarResNet(channels, num_classes, (n, n, n), _width(match, name))


@register_model("resnet_blocks_<n1>_<n2>_<n3>[_w<W>]", r"resnet_blocks(?P<blocks>(?:_\d+)+)(?:_w(?P<width>\d+))?",
                "CIFAR ResNet with a given number of blocks in each stage, e.g. after layer-ticket block removal",
                examples=("resnet_blocks_3_2_3", "resnet_blocks_5_4_5_w32"))
def resnet_blocks(match, input_shape, num_classes):
    name = match.group(0)
    blocks = tuple(int(part) for part in match.group("blocks").strip("_").split("_"))
    if any(n < 1 for n in blocks):
        raise TicketlabError(f"model {name}: every stage needs at least one block, e.g. resnet_blocks_3_2_3")
    channels, _, _ = require_image_shape(name, input_shape)
    return CifarResNet(channels, num_classes, blocks, _width(match, name))
