"""The black-box trigger set: key-derived inputs with key-derived labels, in two families.

Trigger j belongs to family j mod 2, so that every batch of the signing mixes both:
  pattern  far from the data: for images a sinusoidal stripe pattern (random orientation, frequency,
           phase and per-channel sign) of amplitude AMPLITUDE plus uniform noise; for flat inputs a
           random ±AMPLITUDE sign vector plus noise;
  texture  near the data's statistics (standardized inputs: mean 0, variance 1): for images a smooth
           random field (Gaussian noise on a coarse grid, upsampled bilinearly, each image scaled to
           mean 0 and standard deviation 1) plus a little noise; for flat inputs a N(0, 1) vector.
Labels are drawn uniformly over the classes, independently of the inputs, so a model made without
the key agrees with each label with probability exactly 1/C. Everything comes from a generator
seeded by HMAC(key, "triggers" ‖ registration context), so the verifier regenerates the set from the
key and the record, and nobody without the key knows it.

During the signing retraining, PER_BATCH triggers (cycling through the set in order) are appended
to every training batch; the choice depends on the iteration only, so training stays resumable.
"""

from __future__ import annotations

import math

import torch

from ticketlab.ownership.keys import prf_seed

AMPLITUDE = 2.5
NOISE = 1.0
TEXTURE_GRID = 4      # coarse grid of a texture trigger (cells per side)
TEXTURE_NOISE = 0.3
FAMILIES = ("pattern", "texture")
PER_BATCH = 6
DEFAULT_TRIGGERS = 256  # the scheme's m (scheme.py); kept here for the command line's default


def make_triggers(key: bytes, context: bytes, m: int, input_shape, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(prf_seed(key, "triggers", context))
    shape = tuple(input_shape)
    noise = NOISE * (2 * torch.rand(m, *shape, generator=generator) - 1)
    if len(shape) == 3:
        channels, height, width = shape
        angle = math.pi * torch.rand(m, generator=generator)
        frequency = 1 + 3 * torch.rand(m, generator=generator)            # stripes across the image
        phase = 2 * math.pi * torch.rand(m, generator=generator)
        sign = torch.randint(0, 2, (m, channels), generator=generator) * 2 - 1
        rows = torch.arange(height).float()[None, :, None] / height
        cols = torch.arange(width).float()[None, None, :] / width
        along = torch.cos(angle)[:, None, None] * cols + torch.sin(angle)[:, None, None] * rows
        stripes = torch.sin(2 * math.pi * frequency[:, None, None] * along + phase[:, None, None])
        pattern = AMPLITUDE * sign[:, :, None, None] * stripes[:, None]
        coarse = torch.randn(m, channels, TEXTURE_GRID, TEXTURE_GRID, generator=generator)
        field = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    else:
        pattern = AMPLITUDE * (torch.randint(0, 2, (m, *shape), generator=generator) * 2 - 1).float()
        field = torch.randn(m, *shape, generator=generator)
    labels = torch.randint(0, num_classes, (m,), generator=generator)
    flat = field.reshape(m, -1)
    texture = ((flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6)).reshape(field.shape)
    patterns = pattern + noise
    textures = texture + TEXTURE_NOISE * noise / NOISE
    x = torch.where((torch.arange(m) % 2 == 1).reshape(m, *[1] * len(shape)), textures, patterns)
    return x.float(), labels


def family_of(m: int) -> torch.Tensor:
    """Index into FAMILIES of every trigger."""
    return torch.arange(m) % len(FAMILIES)


class TriggerMixer:
    """The trainer's batch hook: append PER_BATCH triggers to each batch, cycling in order."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, per_batch: int = PER_BATCH, before=None):
        self.x, self.y, self.per_batch, self.before = x, y, per_batch, before

    def __call__(self, iteration: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.before is not None:  # e.g. signature.Floors: a pure function of the weights
            self.before()
        if not len(self.y):
            return x, y
        index = (iteration * self.per_batch + torch.arange(self.per_batch)) % len(self.y)
        return torch.cat([x, self.x[index].to(x.device)]), torch.cat([y, self.y[index].to(y.device)])


def chance_level(num_classes: int) -> float:
    """The null agreement per trigger: labels are uniform over the classes and independent of the inputs."""
    return 1.0 / num_classes
