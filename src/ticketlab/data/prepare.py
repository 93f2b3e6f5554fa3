"""Turn a dataset's raw arrays into training-ready tensors: validation split, subset, normalization.

8-bit pixels stay 8-bit (the Dataset standardizes them per batch); other inputs become standardized floats.

The validation set is held out of the official training set by a permutation
seeded with `split_seed`, so it never overlaps the examples trained on and the
test set stays untouched. Statistics for standardization come from the
training examples actually kept, so no validation or test information leaks in.
"""

import numpy as np
import torch

from ticketlab.data.dataset import UINT8_SCALE, Dataset, RawSplits
from ticketlab.errors import TicketlabError


def split_indices(num_examples: int, val_size: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) into the official training set: disjoint, covering it all.

    Training indices keep the permuted order, so taking the first k of them is a
    random subset rather than whatever order the file happens to be in.
    """
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(num_examples, generator=generator).numpy()
    return order[val_size:], order[:val_size]


def prepare(name: str, raw: RawSplits, val_size: int, train_subset: int, split_seed: int,
            test_subset: int = 0) -> Dataset:
    """Split, subset and standardize `raw` into a Dataset; option mistakes become TicketlabErrors."""
    num_train = len(raw.train_y)
    check_sizes(name, num_train, val_size, train_subset)
    if not 0 <= test_subset <= len(raw.test_y):
        raise TicketlabError(f"test_subset {test_subset} must be 0 (all) or at most the {len(raw.test_y)} {name} "
                             "test examples")
    test_count = test_subset or len(raw.test_y)
    train_idx, val_idx = split_indices(num_train, val_size, split_seed)
    if train_subset > 0:
        train_idx = train_idx[:train_subset]

    splits = [raw.train_x[train_idx], raw.train_x[val_idx], raw.test_x[:test_count]]
    # The statistics from a float copy of the training inputs, freed at once when pixels stay 8-bit.
    mean, std = channel_statistics(to_float_tensor(splits[0]))
    if all(x.dtype == np.uint8 for x in splits):
        train_x, val_x, test_x = (torch.from_numpy(np.require(x, requirements=["C_CONTIGUOUS", "WRITEABLE"]))
                                  for x in splits)
    else:
        train_x, val_x, test_x = (to_float_tensor(x).sub_(mean).div_(std) for x in splits)

    return Dataset(
        name=name,
        train_x=train_x,
        train_y=torch.from_numpy(raw.train_y[train_idx].astype(np.int64)),
        val_x=val_x,
        val_y=torch.from_numpy(raw.train_y[val_idx].astype(np.int64)),
        test_x=test_x,
        test_y=torch.from_numpy(np.array(raw.test_y[:test_count], dtype=np.int64)),
        num_classes=raw.num_classes,
        augment=raw.augment,
        normalization=(mean, std),
    )


def check_sizes(name: str, num_train: int, val_size: int, train_subset: int) -> None:
    if val_size < 0:
        raise TicketlabError(f"val_size must be 0 or more, got {val_size}")
    if train_subset < 0:
        raise TicketlabError(f"train_subset must be 0 (all) or more, got {train_subset}")
    if val_size >= num_train:
        raise TicketlabError(
            f"val_size {val_size} leaves no training examples: {name} has {num_train}; "
            f"choose a val_size below {num_train}"
        )
    available = num_train - val_size
    if train_subset > available:
        raise TicketlabError(
            f"train_subset {train_subset} is more than the {available} {name} training examples left after "
            f"holding out {val_size} for validation; choose at most {available} (or 0 for all)"
        )


def to_float_tensor(array: np.ndarray) -> torch.Tensor:
    """float32 copy of `array`; uint8 pixels are scaled to [0, 1] in the same vectorized pass."""
    # torch.from_numpy needs a writable, contiguous array; file-backed arrays are neither.
    array = np.require(array, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    tensor = torch.from_numpy(array).to(torch.float32)
    if array.dtype == np.uint8:
        tensor.mul_(UINT8_SCALE)
    return tensor


def channel_statistics(train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (dim 1) mean and std over all other dims, shaped to broadcast against a batch.

    For flat (N, F) data the "channels" are the features. A constant channel
    gets std 1 so it is centred instead of turned into NaNs.
    """
    reduce_dims = [dim for dim in range(train_x.ndim) if dim != 1]
    var, mean = torch.var_mean(train_x, dim=reduce_dims, correction=0, keepdim=True)
    std = var.sqrt()
    std[std == 0] = 1.0
    return mean, std
