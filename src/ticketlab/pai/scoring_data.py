"""Which training examples a data-driven PaI method scores with.

The scoring batches are the first `score_batches` batches of a permutation of the training set
seeded by the pruning seed (never the global RNG), so the same seed scores on the same examples.
GraSP asks for a fixed number of examples per class, so it can take a class-balanced selection
from the same permutation instead.
"""

from __future__ import annotations

import torch

from ticketlab.config import derive_seed
from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError

Batch = tuple[torch.Tensor, torch.Tensor]


def scoring_order(data: Dataset, seed: int) -> torch.Tensor:
    """The seeded permutation of the training set that scoring examples are drawn from."""
    if len(data.train_y) == 0:
        raise TicketlabError(f"dataset {data.name} has no training examples to score with; use a method that "
                             "needs no data (magnitude, synflow, random) or a larger training subset")
    generator = torch.Generator().manual_seed(derive_seed(seed, "pai-scoring-batches"))
    return torch.randperm(len(data.train_y), generator=generator)


def scoring_batches(data: Dataset, seed: int, score_batches: int, batch_size: int) -> list[Batch]:
    """The first `score_batches` batches of the seeded permutation (fewer if the set is smaller)."""
    order = scoring_order(data, seed)[: score_batches * batch_size]
    return split_batches(data, order, batch_size)


def class_balanced_batches(data: Dataset, seed: int, num_examples: int, batch_size: int) -> list[Batch]:
    """`num_examples` examples taken round-robin over the classes in permutation order.

    The i-th pick of every class comes before the (i+1)-th pick of any class, so each class gets
    num_examples / num_classes examples (±1) while it has enough; cut into batches of batch_size.
    """
    order = scoring_order(data, seed)
    labels = data.train_y[order].to(torch.int64).cpu()
    # Rank of each example among the earlier examples of its class, in permutation order.
    by_class = torch.argsort(labels, stable=True)
    sorted_labels = labels[by_class]
    class_starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.empty_like(labels)
    rank[by_class] = torch.arange(len(labels)) - class_starts
    # Sort by (rank within class, position in the permutation).
    picked = torch.argsort(rank * len(labels) + torch.arange(len(labels)), stable=True)[:num_examples]
    return split_batches(data, order[picked], batch_size)


def split_batches(data: Dataset, indices: torch.Tensor, batch_size: int) -> list[Batch]:
    indices = indices.to(data.train_x.device)
    label_indices = indices.to(data.train_y.device)
    return [(data.train_x.index_select(0, indices[start:start + batch_size]),
             data.train_y.index_select(0, label_indices[start:start + batch_size]))
            for start in range(0, len(indices), batch_size)]
