"""Training-time augmentation as batched tensor ops: random horizontal flip plus pad-and-crop.

"flip-crop" is the standard CIFAR recipe: flip each image left-right with
probability 1/2, zero-pad 4 pixels on every side and crop back to the original
size at a random offset. Each image gets its own flip and offsets, yet the
whole batch is done with one pad and one gather: flip and crop only decide
which source pixel every output pixel reads. The inputs are already
standardized, so zero padding is padding with the training mean.
"""

import torch
import torch.nn.functional as F

from ticketlab.errors import TicketlabError

AUGMENTATIONS = ("none", "flip-crop")
CROP_PADDING = 4


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Augment a (B, C, H, W) batch; `generator` makes the random choices reproducible."""
    if kind == "none":
        return x
    if kind != "flip-crop":
        raise TicketlabError(f"unknown augmentation {kind!r}; choose one of: {', '.join(AUGMENTATIONS)}")
    if x.ndim != 4:
        raise TicketlabError(
            f"flip-crop augmentation needs (B, C, H, W) images, got shape {tuple(x.shape)}; use augment none"
        )
    flip, shift_y, shift_x = flip_crop_draws(x.shape[0], generator)
    return flip_and_shift(x, flip.to(x.device), shift_y.to(x.device), shift_x.to(x.device), CROP_PADDING)


def flip_crop_draws(batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random choices of one flip-crop batch, on the generator's device: (flip, shift_y, shift_x).
    A training loop on a GPU draws a whole epoch's on the CPU and copies them once, not once a step."""
    flip = torch.rand(batch_size, generator=generator, device=generator.device) < 0.5
    shifts = torch.randint(-CROP_PADDING, CROP_PADDING + 1, (2, batch_size), generator=generator,
                           device=generator.device)
    return flip, shifts[0], shifts[1]


def flip_and_shift(x: torch.Tensor, flip: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor,
                   padding: int) -> torch.Tensor:
    """Flip the images where `flip` is true, then crop each at its own offset from a zero-padded copy.

    Output pixel (r, c) of image b is pixel (r + shift_y[b], c + shift_x[b]) of
    the (possibly flipped) image, or 0 where that falls in the padding. Shifts
    must lie in [-padding, padding]; zero shift and no flip return the input.
    """
    batch_size, channels, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    rows = padding + shift_y[:, None] + torch.arange(height, device=x.device)  # (B, H)
    cols = torch.arange(width, device=x.device) + shift_x[:, None]  # (B, W), in the flipped image
    cols = padding + torch.where(flip[:, None], width - 1 - cols, cols)  # back to the unflipped image
    flat_index = (rows[:, :, None] * padded_width + cols[:, None, :]).view(batch_size, 1, height * width)
    gathered = padded.view(batch_size, channels, -1).gather(2, flat_index.expand(-1, channels, -1))
    return gathered.view(batch_size, channels, height, width)
