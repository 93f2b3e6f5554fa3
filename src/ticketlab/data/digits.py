"""scikit-learn's bundled handwritten digits: 1797 real 8x8 grayscale images, no download needed.

The set has no official test split, so a fixed seeded permutation sets aside
297 examples as the test set (the same in every run, whatever the split seed);
the remaining 1500 are the training pool the validation split is taken from.
"""

from pathlib import Path

import numpy as np

from ticketlab.data.dataset import RawSplits
from ticketlab.errors import missing_extra

NUM_TEST = 297
NUM_CLASSES = 10
MAX_PIXEL_VALUE = 16.0  # the digits are 4-bit intensity counts
TEST_SPLIT_SEED = 0


def load_digits(root: Path) -> RawSplits:
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError:
        raise missing_extra("the digits dataset needs scikit-learn", "digits") from None
    bunch = sklearn_load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / MAX_PIXEL_VALUE)[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(TEST_SPLIT_SEED).permutation(len(labels))
    test, train = order[:NUM_TEST], order[NUM_TEST:]
    return RawSplits(images[train], labels[train], images[test], labels[test], num_classes=NUM_CLASSES)
