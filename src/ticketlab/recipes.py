"""Named training recipes from the papers (like open_lth's default hyperparameters): `preset("lth-lenet")`.

A preset is a TrainConfig; any field can be overridden (`preset("lth-lenet", steps="5000it")`). Each
names its source, and `presets()` lists them with it. A preset sets the training only: each source
also says which initialization and pruning rates its paper or open_lth used, and the options that give
them, where they are not ticketlab's defaults (Kaiming normal weights as open_lth, zero biases, the
output layer pruned with the rest).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ticketlab.config import TrainConfig
from ticketlab.errors import TicketlabError


@dataclass(frozen=True)
class Preset:
    recipe: TrainConfig
    source: str


_CIFAR_SGD = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128, steps="160ep",
                  milestones="80ep,120ep", augment="auto")

PRESETS: dict[str, Preset] = {
    "lth-lenet": Preset(TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps="50000it", eval_every="100it"),
                        "Frankle & Carbin 2019 (LTH), LeNet-300-100 on MNIST: Adam 1.2e-3, batch 60, 50K iterations; the "
                        "paper also used Gaussian Glorot weights (--init glorot) and layer-wise rates of 20%, 10% for "
                        "the output layer (--strategy layerwise --output-prune-fraction 0.1)"),
    "lth-conv2": Preset(TrainConfig(optimizer="adam", lr=2e-4, batch_size=60, steps="20000it", eval_every="100it"),
                        "Frankle & Carbin 2019 (LTH), Conv-2 on CIFAR-10: Adam 2e-4, batch 60, 20K iterations; the paper "
                        "also used --init glorot, --strategy layerwise, conv 10%, fc 20%, output 10% "
                        "(--conv-prune-fraction 0.1 --output-prune-fraction 0.1)"),
    "lth-conv4": Preset(TrainConfig(optimizer="adam", lr=3e-4, batch_size=60, steps="25000it", eval_every="100it"),
                        "Frankle & Carbin 2019 (LTH), Conv-4 on CIFAR-10: Adam 3e-4, batch 60, 25K iterations; the paper "
                        "also used --init glorot, --strategy layerwise, conv 10%, fc 20%, output 10% "
                        "(--conv-prune-fraction 0.1 --output-prune-fraction 0.1)"),
    "lth-conv6": Preset(TrainConfig(optimizer="adam", lr=3e-4, batch_size=60, steps="30000it", eval_every="100it"),
                        "Frankle & Carbin 2019 (LTH), Conv-6 on CIFAR-10: Adam 3e-4, batch 60, 30K iterations; the paper "
                        "also used --init glorot, --strategy layerwise, conv 15%, fc 20%, output 10% "
                        "(--conv-prune-fraction 0.15 --output-prune-fraction 0.1)"),
    "openlth-lenet": Preset(TrainConfig(optimizer="sgd", lr=0.1, batch_size=128, steps="40ep"),
                            "open_lth's LeNet-300-100 defaults: SGD 0.1, batch 128, 40 epochs (ticketlab's imp default); "
                            "open_lth also keeps PyTorch's uniform biases and never prunes the output layer "
                            "(--bias uniform --output-prune-fraction 0); Kaiming normal weights and global 20% "
                            "as ticketlab's defaults"),
    "ltr-resnet20": Preset(TrainConfig(**_CIFAR_SGD),
                           "Frankle et al. 2020 (LTR, linear mode connectivity), CIFAR ResNet-20 as in open_lth: SGD "
                           "0.1, momentum 0.9, weight decay 1e-4, batch 128, 160 epochs, lr x0.1 at 80 and 120, "
                           "flip + pad-crop; rewind to k of about 5 epochs; open_lth also keeps the output layer whole and its "
                           "bias uniform (--output-prune-fraction 0 --bias uniform), and draws BatchNorm scales "
                           "U(0, 1) where ticketlab sets 1"),
    "ltr-vgg16": Preset(TrainConfig(**_CIFAR_SGD),
                        "Frankle et al. 2020 (LTR), CIFAR VGG-16: the ResNet-20 recipe (open_lth's defaults); open_lth "
                        "also keeps the output layer whole and its bias uniform (--output-prune-fraction 0 "
                        "--bias uniform)"),
    "cts-resnet20": Preset(TrainConfig(**_CIFAR_SGD),
                           "Concrete Ticket Search, ResNet-20 on CIFAR-10: the standard 160-epoch SGD recipe; the "
                           "search's own settings are the cts options"),
    "supertickets": Preset(TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-5, batch_size=128,
                                       steps="10ep"),
                           "SuperTickets (You et al. 2022) supernet training shortened for 2 CPU cores: SGD 0.05, "
                           "momentum 0.9, weight decay 5e-5, batch 128, 10 epochs (the supertickets and transfer "
                           "default)"),
    "demo": Preset(TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps="2000it", eval_every="250it",
                               threads=1),
                   "ticketlab's main job: the LTH LeNet recipe shortened to 2,000 iterations (evaluated every 250) "
                   "so that 16 levels and their controls fit in under 5 minutes on one thread of a 2-core "
                   "machine (a second thread gains little on LeNet and loses much when the other core is busy)"),
}


def preset(name: str, **overrides) -> TrainConfig:
    """The recipe called `name`, with any TrainConfig field overridden."""
    if name not in PRESETS:
        raise TicketlabError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TicketlabError(f"preset fields {unknown} are not training options; known: "
                             f"{', '.join(f.name for f in dataclasses.fields(TrainConfig))}")
    return dataclasses.replace(PRESETS[name].recipe, **overrides)


def presets() -> dict[str, str]:
    """Every preset's name and source."""
    return {name: p.source for name, p in PRESETS.items()}
