"""Mini-batches as index slices of in-memory tensors, in an order fixed by (seed, epoch).

The shuffle for an epoch depends only on the data-order seed and the epoch
number, never on what ran before, so a run resumed mid-epoch replays exactly
the batches it would have seen. No DataLoader and no per-example Python: one
randperm per epoch, then one index_select per batch.
"""

import hashlib
from collections.abc import Iterator

import torch

from ticketlab.errors import TicketlabError


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed for one epoch; hashing keeps nearby (seed, epoch) pairs unrelated."""
    digest = hashlib.blake2b(f"ticketlab-epoch:{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    """The order (int64 indices on the CPU) in which epoch `epoch` visits the examples."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(num_examples, generator=generator)


def batches_per_epoch(num_examples: int, batch_size: int) -> int:
    """Number of batches in an epoch; the last, partial batch counts."""
    check_batch_size(batch_size)
    return -(-num_examples // batch_size)


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, epoch: int, seed: int,
                    start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x batch, y batch) for one epoch, starting at batch `start_batch` (to resume mid-epoch)."""
    check_batch_size(batch_size)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    order = epoch_permutation(len(x), seed, epoch).to(x.device)
    labels_order = order if y.device == x.device else order.to(y.device)
    for batch in range(start_batch, batches_per_epoch(len(x), batch_size)):
        begin = batch * batch_size
        yield x.index_select(0, order[begin : begin + batch_size]), \
            y.index_select(0, labels_order[begin : begin + batch_size])


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise TicketlabError(f"batch size must be at least 1, got {batch_size}")
