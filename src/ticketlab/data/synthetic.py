"""Two small generated datasets for tests: `synthetic` (flat vectors) and `synthetic-images`.

Both have 10 classes, 2000 training and 500 test examples, and are a fixed
function of a constant seed (the split seed only chooses the validation
examples). Each class is a Gaussian blob around its own random mean, so a
linear model or a tiny MLP gets well above chance within a few hundred
iterations, while the added noise keeps it short of 100%.

- `synthetic`: (N, 20) feature vectors.
- `synthetic-images`: (N, 3, 8, 8) images whose class means are smooth
  spatial patterns, so convolutional models can be tested on it too.
"""

from pathlib import Path

import numpy as np

from ticketlab.data.dataset import RawSplits

NUM_CLASSES = 10
NUM_TRAIN = 2000
NUM_TEST = 500
NUM_FEATURES = 20
IMAGE_SHAPE = (3, 8, 8)
GENERATOR_SEED = 20190304  # fixed: the dataset must be identical in every run and on every machine
# Std of the class means relative to unit noise, tuned so logistic regression
# scores about 86% on the test set of each: clearly learnable, not trivial.
FEATURE_SEPARATION = 0.75
IMAGE_SEPARATION = 0.25  # lower than for features because an image has 192 values to average over


def load_synthetic(root: Path) -> RawSplits:
    """Flat features: class means drawn once, unit Gaussian noise around them."""
    rng = np.random.default_rng(GENERATOR_SEED)
    class_means = FEATURE_SEPARATION * rng.standard_normal((NUM_CLASSES, NUM_FEATURES))
    return sample_around_means(rng, class_means)


def load_synthetic_images(root: Path) -> RawSplits:
    """Images: class means are smoothed random patterns, so neighbouring pixels are correlated."""
    rng = np.random.default_rng(GENERATOR_SEED + 1)
    patterns = rng.standard_normal((NUM_CLASSES, *IMAGE_SHAPE))
    smooth = box_blur(patterns)
    smooth /= smooth.std(axis=(1, 2, 3), keepdims=True)
    class_means = IMAGE_SEPARATION * smooth
    return sample_around_means(rng, class_means)


def sample_around_means(rng: np.random.Generator, class_means: np.ndarray) -> RawSplits:
    """Balanced, shuffled labels; each example is its class mean plus unit Gaussian noise."""
    num_examples = NUM_TRAIN + NUM_TEST
    labels = rng.permutation(np.arange(num_examples) % NUM_CLASSES).astype(np.int64)
    noise = rng.standard_normal((num_examples, *class_means.shape[1:]))
    examples = (class_means[labels] + noise).astype(np.float32)
    return RawSplits(
        train_x=examples[:NUM_TRAIN],
        train_y=labels[:NUM_TRAIN],
        test_x=examples[NUM_TRAIN:],
        test_y=labels[NUM_TRAIN:],
        num_classes=NUM_CLASSES,
    )


def box_blur(images: np.ndarray) -> np.ndarray:
    """3x3 mean filter over the last two axes (edge-padded), vectorized with shifted sums."""
    height, width = images.shape[-2:]
    padded = np.pad(images, [(0, 0)] * (images.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    total = sum(padded[..., dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    return total / 9.0
