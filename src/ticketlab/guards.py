"""Guards shared by the mask-finding methods (PaI scoring, CTS): the model fits the data, and any
incidental global randomness is seeded while the caller's RNG state is left as it was."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ticketlab.config import derive_seed
from ticketlab.errors import TicketlabError


def check_model_fits_data(model: nn.Module, data) -> None:
    """A model built for another input shape or class count than the dataset is a user mistake."""
    architecture = getattr(model, "architecture", None) or {}
    if tuple(architecture.get("input_shape", data.input_shape)) != tuple(data.input_shape):
        raise TicketlabError(f"the model was built for inputs {tuple(architecture['input_shape'])} but dataset "
                             f"{data.name} has {tuple(data.input_shape)}; build the model for this dataset")
    if architecture.get("num_classes", data.num_classes) != data.num_classes:
        raise TicketlabError(f"the model has {architecture['num_classes']} outputs but dataset {data.name} has "
                             f"{data.num_classes} classes; build the model for this dataset")


@contextmanager
def isolated_rng(model: nn.Module, seed: int, purpose: str):
    """Seed the global generators from (seed, purpose) for the block; restore the caller's state after."""
    cuda_devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda_devices):
        torch.default_generator.manual_seed(derive_seed(seed, purpose))
        yield
