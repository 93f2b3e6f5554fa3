"""Models by name: `create_model("resnet20", (3, 32, 32), 10, seed=0)`.

One file per family registers its names (see registry.py for the mechanism and for the
`prunable_names` / `output_name` / `architecture` attributes every model carries):
  mlp.py          lenet_300_100, mlp_<h1>_<h2>_...
  convnet.py      conv2, conv4, conv6 (LTH paper)
  resnet.py       resnet<D>[_w<W>], resnet_blocks_<n1>_<n2>_<n3>[_w<W>] (CIFAR ResNets)
  vgg.py          vgg11, vgg16, vgg19 (CIFAR VGG with BatchNorm)
  mnist1d_cnn.py  mnist1d_cnn
  supernet.py     supernet[_w<W>][_c<C>][_e<E>] (SuperTickets' multi-branch supernet)
Adding a family is adding a file and importing it below.
"""

from ticketlab.models.registry import (
    create_model,
    describe_models,
    model_from_architecture,
    model_from_config,
    model_names,
    output_name,
    prunable_names,
    register_model,
)

# Imported for their registrations; the order is the order of `model_names()`.
from ticketlab.models import mlp, convnet, resnet, vgg, mnist1d_cnn, supernet  # noqa: E402,F401  isort: skip
from ticketlab.models.resnet import BasicBlock, CifarResNet, resnet_name  # noqa: E402

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "create_model",
    "describe_models",
    "model_from_architecture",
    "model_from_config",
    "model_names",
    "output_name",
    "prunable_names",
    "register_model",
    "resnet_name",
]
