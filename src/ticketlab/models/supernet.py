"""SuperTickets' supernet (HR-NAS style, docs/methods.md, SuperTickets): `supernet[_w<W>][_c<C>][_e<E>]`.

Two resolution branches run side by side: a high one at 1/2 of the input (W channels) and a low one
at 1/4 (2W channels). Each of C cells applies one mixed block per branch, then fuses the branches:
the low branch, projected (1x1 conv + BN) and upsampled, is added to the high one, and the high
branch, downsampled (strided 3x3 conv + BN), is added to the low one, each followed by ReLU.
A mixed block is an inverted residual whose middle holds three parallel depthwise paths of kernels
3, 5 and 7, summed:

    path k:  1x1 expand (width -> hidden) -> BN -> ReLU -> kxk depthwise -> BN (γ) -> ReLU -> 1x1 project
    block:   x + BN(sum of its paths)

The BN scale factors γ after the depthwise convs (one per hidden channel per path) are the
architecture variables the search drives to zero. Both branches are pooled and concatenated into
the `classifier`. Defaults W=16, C=3, E=3 (hidden = E x width per path): about 0.13 M parameters, sized
for 28-32 pixel inputs on a CPU. Any input of at least 4x4 pixels works.

A searched network has fewer hidden channels per path, and some paths none: `path_widths(model)`
reads them, and `set_path_widths(model, widths)` rebuilds a named supernet at given widths (a width of
0 deletes the path). Ticket files record them as `architecture["paths"]`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.initialization import initialize_weights_
from ticketlab.models.registry import ARCHITECTURE_HOOKS, register_model, require_image_shape

KERNELS = (3, 5, 7)
DEFAULTS = {"width": 16, "cells": 3, "expand": 3}


class KernelPath(nn.Module):
    def __init__(self, width: int, hidden: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.expand = nn.Conv2d(width, hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(hidden)  # its weight holds the architecture variables γ
        self.project = nn.Conv2d(hidden, width, 1, bias=False)

    @property
    def hidden(self) -> int:
        return self.depthwise.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.expand_bn(self.expand(x)))
        h = torch.relu(self.depthwise_bn(self.depthwise(h)))
        return self.project(h)


class MixedBlock(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.width = width
        self.paths = nn.ModuleDict({f"k{k}": KernelPath(width, hidden, k) for k in KERNELS})
        self.out_bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = sum(path(x) for path in self.paths.values())
        return x + self.out_bn(total)


class Fuse(nn.Module):
    """Exchange between the branches: each receives the other resampled to its resolution."""

    def __init__(self, high: int, low: int):
        super().__init__()
        self.low_to_high = nn.Conv2d(low, high, 1, bias=False)
        self.low_to_high_bn = nn.BatchNorm2d(high)
        self.high_to_low = nn.Conv2d(high, low, 3, stride=2, padding=1, bias=False)
        self.high_to_low_bn = nn.BatchNorm2d(low)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up = F.interpolate(self.low_to_high_bn(self.low_to_high(low)), size=high.shape[2:], mode="nearest")
        down = self.high_to_low_bn(self.high_to_low(high))
        return torch.relu(high + up), torch.relu(low + down)


class Cell(nn.Module):
    def __init__(self, high: int, low: int, expand: int):
        super().__init__()
        self.high = MixedBlock(high, expand * high)
        self.low = MixedBlock(low, expand * low)
        self.fuse = Fuse(high, low)

    def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        high, low = pair
        return self.fuse(self.high(high), self.low(low))


class SuperNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int, cells: int, expand: int):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.to_low = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.to_low_bn = nn.BatchNorm2d(2 * width)
        self.cells = nn.ModuleList(Cell(width, 2 * width, expand) for _ in range(cells))
        self.classifier = nn.Linear(3 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high = torch.relu(self.stem_bn(self.stem(x)))
        low = torch.relu(self.to_low_bn(self.to_low(high)))
        for cell in self.cells:
            high, low = cell((high, low))
        return self.classifier(torch.cat([high.mean(dim=(2, 3)), low.mean(dim=(2, 3))], dim=1))


def mixed_blocks(model: nn.Module) -> dict[str, MixedBlock]:
    """The searchable blocks by module path, e.g. {"cells.0.high": block, ...}."""
    return {name: module for name, module in model.named_modules() if isinstance(module, MixedBlock)}


def path_widths(model: nn.Module) -> dict[str, dict[str, int]]:
    """Hidden channels of every kernel path of every block: {"cells.0.high": {"3": 48, "5": 48, "7": 0}}."""
    widths = {}
    for name, block in mixed_blocks(model).items():
        widths[name] = {str(k): (block.paths[f"k{k}"].hidden if f"k{k}" in block.paths else 0) for k in KERNELS}
    return widths


def set_path_widths(model: nn.Module, widths: dict, seed: int | None = None) -> None:
    """Rebuild the kernel paths of a supernet at the given hidden widths (0 deletes a path), in place.

    New paths are freshly initialized (from a forked RNG seeded with `seed` when given); a ticket
    file then loads its own values into them.
    """
    blocks = mixed_blocks(model)
    if not blocks:
        raise TicketlabError("architecture paths apply to supernet models only; the ticket file may be damaged")
    if not isinstance(widths, dict) or set(widths) != set(blocks):
        raise TicketlabError(f"architecture paths must name every block of the supernet ({', '.join(blocks)}); "
                             f"got {sorted(widths) if isinstance(widths, dict) else widths!r}")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for name, block in blocks.items():
            entry = widths[name]
            if not isinstance(entry, dict) or set(entry) != {str(k) for k in KERNELS} or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in entry.values()):
                raise TicketlabError(f"architecture paths: {name} needs a non-negative width for kernels "
                                     f"{', '.join(map(str, KERNELS))}; got {entry!r}")
            if sum(entry.values()) == 0:
                raise TicketlabError(f"architecture paths: block {name} keeps no channel at all; the ticket file may be damaged")
            paths = nn.ModuleDict()
            for k in KERNELS:
                if entry[str(k)] > 0:
                    path = KernelPath(block.width, entry[str(k)], k)
                    initialize_weights_(path)
                    paths[f"k{k}"] = path
            block.paths = paths


@register_model("supernet[_w<W>][_c<C>][_e<E>]", r"supernet(?:_w(?P<width>\d+))?(?:_c(?P<cells>\d+))?(?:_e(?P<expand>\d+))?",
                "SuperTickets supernet: two resolution branches (W and 2W channels) fused after each of C cells, "
                "blocks of three depthwise paths (kernels 3, 5, 7, hidden E x width); defaults W=16, C=3, E=3",
                examples=("supernet", "supernet_w24_c4", "supernet_e2"))
def supernet(match, input_shape, num_classes):
    name = match.group(0)
    values = {key: int(match.group(key)) if match.group(key) else default for key, default in DEFAULTS.items()}
    if any(v < 1 for v in values.values()):
        raise TicketlabError(f"model {name}: width, cells and expansion must be positive, e.g. supernet_w16_c3_e3")
    channels, height, width = require_image_shape(name, input_shape)
    if min(height, width) < 4:
        raise TicketlabError(f"model {name} needs images of at least 4x4 pixels; got {height}x{width}")
    return SuperNet(channels, num_classes, values["width"], values["cells"], values["expand"])


ARCHITECTURE_HOOKS["paths"] = set_path_widths  # a ticket's "paths" rebuild its searched network
