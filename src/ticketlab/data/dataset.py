"""The two data containers: what a format reader returns, and what training code consumes.

A reader (IDX, CIFAR, mnist1d, ...) produces `RawSplits`: the official train and
test sets as numpy arrays, untouched. `load_dataset` turns that into a `Dataset`:
a validation split held out of the training set, standardized with training-set
statistics, ready to be sliced into batches.

Images that come as 8-bit pixels stay 8-bit in memory (a quarter of float32's
size) and are standardized per batch by the training loop and evaluation
(`Dataset.stored` and `Dataset.standardize`). Every other reader of
`train_x`, `val_x` or `test_x` gets the standardized float32 tensor, made on
its first read and then kept; the values are the same either way.
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


UINT8_SCALE = 1.0 / 255.0  # 8-bit pixels are scaled to [0, 1] before standardization


class Inputs:
    """A split's inputs as a Dataset field: what was given is stored; reading gives standardized floats.

    8-bit pixels (stored when the Dataset has a `normalization`) are standardized on the first read and the
    float tensor kept beside them, so code that indexes `data.train_x` repeatedly pays once.
    """

    def __set_name__(self, owner, name: str):
        self.name, self.float_key = name, f"{name}:standardized"

    def __get__(self, data, owner=None):
        if data is None:  # no class-level default: the dataclass field stays required
            raise AttributeError(self.name)
        stored = data.__dict__[self.name]
        if not data.is_pixels(stored):
            return stored
        if self.float_key not in data.__dict__:
            data.__dict__[self.float_key] = data.standardize(stored)
        return data.__dict__[self.float_key]

    def __set__(self, data, value):
        data.__dict__[self.name] = value
        data.__dict__.pop(self.float_key, None)


@dataclass
class Dataset:
    """Train, validation and test tensors held in memory, normalized and ready to batch."""

    name: str
    train_x: torch.Tensor = Inputs()
    train_y: torch.Tensor
    val_x: torch.Tensor = Inputs()
    val_y: torch.Tensor
    test_x: torch.Tensor = Inputs()
    test_y: torch.Tensor
    num_classes: int
    augment: str  # "none" or "flip-crop"; the trainer applies it to training batches
    source: object = field(default=None, compare=False, repr=False)  # the DataConfig it was loaded with, if any
    # (mean, std) per channel, shaped (1, C, 1...) to broadcast on a batch: the inputs are (raw - mean) / std,
    # raw being pixels in [0, 1] (or values as given); exports fold it in so that they take raw inputs.
    normalization: tuple | None = field(default=None, compare=False, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (1, 28, 28) or (3, 32, 32) or (20,)."""
        return tuple(self.stored("train").shape[1:])

    def stored(self, split: str) -> torch.Tensor:
        """The inputs of "train", "val" or "test" as held: 8-bit pixels or floats; `standardize` makes a batch
        of them model inputs. Batches cut from 8-bit pixels cost a quarter of the memory traffic."""
        return self.__dict__[f"{split}_x"]

    def is_pixels(self, x: torch.Tensor) -> bool:
        return x.dtype == torch.uint8 and self.normalization is not None

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs from stored inputs (a batch or a whole split): 8-bit pixels scaled to [0, 1] and
        standardized per channel with the training statistics, in the operations and order a float copy of
        the whole split was standardized with, so the values are bit for bit the same; floats as they are."""
        if not self.is_pixels(x):
            return x
        mean, std = self.normalization
        if mean.device != x.device:  # copied to a device once, not once a batch: each copy waits for the GPU
            key = f"normalization:{x.device}"
            if key not in self.__dict__:
                self.__dict__[key] = (mean.to(x.device), std.to(x.device))
            mean, std = self.__dict__[key]
        return x.to(torch.float32).mul_(UINT8_SCALE).sub_(mean).div_(std)
