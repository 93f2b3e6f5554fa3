"""The two data containers: what a format reader returns, and what training code consumes.

A reader (IDX, CIFAR, mnist1d, ...) produces `RawSplits`: the official train and
test sets as numpy arrays, untouched. `load_dataset` turns that into a `Dataset`:
a validation split held out of the training set, float32 tensors standardized
with training-set statistics, ready to be sliced into batches.
"""

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class RawSplits:
    """A dataset as it comes off disk (or out of a generator), before splitting.

    Image arrays are (N, C, H, W), series (N, 1, L), flat features (N, F).
    uint8 arrays hold 0..255 pixel values and are scaled to [0, 1] later;
    float arrays are taken as they are.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    augment: str = "none"


@dataclass
class Dataset:
    """Train, validation and test tensors held in memory, normalized and ready to batch."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    augment: str  # "none" or "flip-crop"; the trainer applies it to training batches
    source: object = field(default=None, compare=False, repr=False)  # the DataConfig it was loaded with, if any

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (1, 28, 28) or (3, 32, 32) or (20,)."""
        return tuple(self.train_x.shape[1:])
