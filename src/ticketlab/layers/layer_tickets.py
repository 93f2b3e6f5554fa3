"""Layer tickets (docs/methods.md, Layer tickets): remove whole residual blocks at initialization, keep θ₀ for the rest.

1. Score every removable block — a BasicBlock with an identity shortcut, so removing it leaves the
   network's shapes intact — with a pruning-at-initialization criterion on real data. Per-weight
   scores are turned into the criterion's *importance* (higher = keep: the score for SNIP and
   magnitude, −S for GraSP, which keeps its smallest S) and aggregated over the block's weights:
     sum               Σ importance (the default; big blocks weigh more)
     mean              Σ importance / number of weights
     stage-normalized  the block's sum divided by the mean |sum| of the removable blocks of its stage,
                       so stages of different widths compete on equal terms
   `random` gives every block a seeded uniform score.
2. Remove the p lowest-scoring blocks while every stage keeps at least `min_per_stage` blocks (by
   default 2 where the stage has 2 or more, else 1) and rebuild a physically shallower
   `resnet_blocks_<n1>_<n2>_<n3>` whose every remaining layer holds its θ₀ exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.config import derive_seed
from ticketlab.errors import TicketlabError
from ticketlab.models import CifarResNet, create_model, resnet_name
from ticketlab.pai import PAI_METHODS, find_mask

CRITERIA = ("grasp", "snip", "magnitude", "random")
AGGREGATES = ("sum", "mean", "stage-normalized")

Block = tuple[int, int]  # (stage, index within the stage)


def check_resnet(model: nn.Module) -> CifarResNet:
    if not isinstance(model, CifarResNet):
        raise TicketlabError(f"layer tickets remove residual blocks, so they need a ResNet (resnet20, resnet32, "
                             f"resnet56, resnet_blocks_*); got {model.architecture['name']}")
    return model


def removable_blocks(model: CifarResNet) -> list[Block]:
    return [(s, i) for s, stage in enumerate(model.stages) for i, block in enumerate(stage) if block.has_identity_shortcut]


def default_min_per_stage(blocks_in_stage: int) -> int:
    return 2 if blocks_in_stage >= 2 else 1


def weight_importance(model: CifarResNet, data, criterion: str, seed: int, score_batches: int,
                      batch_size: int, grasp_batches: str | None = None) -> dict[str, torch.Tensor]:
    """Per-weight importance (higher = keep) of every prunable weight under the criterion (GraSP's BatchNorm
    batches: halves by default, see pai/grasp.py)."""
    if criterion == "magnitude":
        return {n: p.detach().abs().double() for n, p in model.named_parameters() if n in set(model.prunable_names)}
    result = find_mask(criterion, model, data, 1.0, seed=seed, score_batches=score_batches, batch_size=batch_size,
                       grasp_batches=grasp_batches or "halves")
    sign = -1.0 if PAI_METHODS[criterion].score_order == "smallest" else 1.0
    return {n: sign * s for n, s in result.scores.items()}


def block_scores(model: nn.Module, data, criterion: str = "grasp", aggregate: str = "sum", seed: int = 0,
                 score_batches: int = 1, batch_size: int = 128, grasp_batches: str | None = None) -> dict[Block, float]:
    model = check_resnet(model)
    if criterion not in CRITERIA:
        raise TicketlabError(f"unknown layer-ticket criterion {criterion!r}; known: {', '.join(CRITERIA)}")
    if aggregate not in AGGREGATES:
        raise TicketlabError(f"unknown --aggregate {aggregate!r}; known: {', '.join(AGGREGATES)}")
    blocks = removable_blocks(model)
    if criterion == "random":
        generator = torch.Generator().manual_seed(derive_seed(seed, "layer-ticket-random"))
        return {b: float(v) for b, v in zip(blocks, torch.rand(len(blocks), generator=generator, dtype=torch.float64))}
    importance = weight_importance(model, data, criterion, seed, score_batches, batch_size, grasp_batches)
    scores = {}
    for stage, index in blocks:
        prefix = f"stages.{stage}.{index}."
        values = [v for n, v in importance.items() if n.startswith(prefix)]
        total = float(sum(v.sum() for v in values))
        scores[(stage, index)] = total / sum(v.numel() for v in values) if aggregate == "mean" else total
    if aggregate == "stage-normalized":
        for stage in {s for s, _ in blocks}:
            members = [b for b in blocks if b[0] == stage]
            scale = sum(abs(scores[b]) for b in members) / len(members) or 1.0
            for b in members:
                scores[b] /= scale
    return scores


def choose_removed(model: CifarResNet, scores: dict[Block, float], p: int,
                   min_per_stage: int | None = None) -> list[Block]:
    """The p lowest-scoring removable blocks whose removal leaves every stage its minimum."""
    counts = [len(stage) for stage in model.stages]
    floors = [default_min_per_stage(n) if min_per_stage is None else min(min_per_stage, n) for n in counts]
    if min_per_stage is not None and min_per_stage < 1:
        raise TicketlabError("--min-per-stage must be at least 1: a stage without blocks would break the network")
    can_remove = [min(n - f, sum(1 for s, _ in scores if s == i)) for i, (n, f) in enumerate(zip(counts, floors))]
    if not 0 <= p <= sum(can_remove):
        raise TicketlabError(f"--remove {p} is impossible: at most {sum(can_remove)} blocks can go while every stage "
                             f"keeps its minimum ({', '.join(map(str, floors))} blocks); lower --remove or --min-per-stage")
    removed, left = [], list(counts)
    for block in sorted(scores, key=lambda b: (scores[b], b)):
        if len(removed) == p:
            break
        if left[block[0]] > floors[block[0]]:
            removed.append(block)
            left[block[0]] -= 1
    return sorted(removed)


def remove_blocks(model: CifarResNet, removed: list[Block]) -> CifarResNet:
    """A shallower ResNet without the removed blocks; every other layer keeps its weights exactly."""
    kept = [[i for i in range(len(stage)) if (s, i) not in removed] for s, stage in enumerate(model.stages)]
    spec = model.architecture
    name = resnet_name([len(k) for k in kept], model.base_width)
    small = create_model(name, tuple(spec["input_shape"]), spec["num_classes"], seed=0)
    renamed = {}
    for key, value in model.state_dict().items():
        if key.startswith("stages."):
            _, stage, index, rest = key.split(".", 3)
            stage, index = int(stage), int(index)
            if (stage, index) in removed:
                continue
            key = f"stages.{stage}.{kept[stage].index(index)}.{rest}"
        renamed[key] = value.clone()
    small.load_state_dict(renamed)
    return small
