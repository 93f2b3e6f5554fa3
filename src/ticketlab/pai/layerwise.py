"""Random masks with chosen layer-wise densities: uniform (`random`), ERK, and smart ratio.

These methods score nothing: they decide how many weights each layer keeps, then pick that many
uniformly at random inside the layer. The counts come from one routine, `allocate_counts`: a
layer's count is proportional to its *share*, clipped to [floor, layer size], with the scale
chosen so the counts sum exactly to the budget — clipping at 1 and redistributing the excess to
the other layers is what the scale search does by itself.
"""

from __future__ import annotations

import math

import torch

from ticketlab.config import derive_seed
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.pai.request import MethodOutput, PaiRequest
from ticketlab.pai.selection import layer_floors

SMART_RATIO_CLASSIFIER_DENSITY = 0.3  # Su et al. 2020 fix the classifier's keep ratio at 0.3
_BISECTION_STEPS = 200  # float64 bisection: far past the point where the scale stops changing


def allocate_counts(total: int, shares: dict[str, float], sizes: dict[str, int],
                    floors: dict[str, int]) -> dict[str, int]:
    """Integer counts summing to `total`, each ≈ clip(scale·share, floor, size) for one common scale."""
    if not sum(floors.values()) <= total <= sum(sizes.values()):
        raise TicketlabError(f"cannot keep {total} weights in layers of {sum(sizes.values())} weights with "
                             f"{sum(floors.values())} reserved; lower min_per_layer or change the density")
    names = list(sizes)

    def clipped(scale: float) -> dict[str, float]:
        return {n: min(float(sizes[n]), max(float(floors[n]), scale * shares[n])) for n in names}

    # The clipped sum grows with the scale, from sum(floors) at 0 to sum(sizes) at `high`.
    low, high = 0.0, max(sizes[n] / shares[n] for n in names if shares[n] > 0) if any(shares.values()) else 0.0
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if sum(clipped(middle).values()) < total:
            low = middle
        else:
            high = middle
    real = clipped(high)

    # Largest-remainder rounding keeps the exact total and every count within its bounds.
    counts = {n: max(floors[n], min(sizes[n], math.floor(real[n]))) for n in names}
    missing = total - sum(counts.values())
    room = sorted((n for n in names if counts[n] < sizes[n]), key=lambda n: real[n] - counts[n], reverse=True)
    while missing < 0:  # only reachable through float error in the bisection: take from the smallest remainders
        n = min((n for n in names if counts[n] > floors[n]), key=lambda n: real[n] - counts[n])
        counts[n] -= 1
        missing += 1
    for n in room[:missing]:
        counts[n] += 1
    assert sum(counts.values()) == total, "allocate_counts lost the exact total"
    return counts


def uniform_shares(shapes: dict[str, torch.Size]) -> dict[str, float]:
    """Every layer at the same density: count ∝ layer size."""
    return {n: float(math.prod(shape)) for n, shape in shapes.items()}


def erk_shares(shapes: dict[str, torch.Size]) -> dict[str, float]:
    """ERK (RigL): density ∝ sum(dims)/prod(dims), so count = density·prod(dims) ∝ sum(dims)."""
    return {n: float(sum(shape)) for n, shape in shapes.items()}


def smart_ratio_counts(total: int, shapes: dict[str, torch.Size], classifier: str,
                       floors: dict[str, int]) -> dict[str, int]:
    """Smart ratio (Su et al. 2020): density of layer l ∝ (L−l+1)² + (L−l+1); classifier at 0.3.

    If the budget cannot hold the classifier at 0.3 (too few weights overall, or too many for the
    other layers even when dense), the classifier takes the nearest feasible count.
    """
    names = list(shapes)
    sizes = {n: math.prod(shape) for n, shape in shapes.items()}
    depth = len(names)
    others = [n for n in names if n != classifier]
    lowest = max(floors[classifier], total - sum(sizes[n] for n in others))
    highest = min(sizes[classifier], total - sum(floors[n] for n in others))
    if lowest > highest:
        raise TicketlabError(f"cannot keep {total} weights with min_per_layer floors {floors}; "
                             "lower min_per_layer or change the density")
    classifier_count = min(highest, max(lowest, round(SMART_RATIO_CLASSIFIER_DENSITY * sizes[classifier])))
    # Layer l (1-based, in prunable order) gets keep ratio ∝ (L−l+1)² + (L−l+1); count = ratio·size.
    shares = {n: ((depth - l + 1) ** 2 + (depth - l + 1)) * sizes[n]
              for l, n in enumerate(names, start=1) if n != classifier}
    counts = allocate_counts(total - classifier_count, shares, {n: sizes[n] for n in others},
                             {n: floors[n] for n in others}) if others else {}
    counts[classifier] = classifier_count
    return {n: counts[n] for n in names}


def random_mask_with_counts(shapes: dict[str, torch.Size], counts: dict[str, int],
                            generator: torch.Generator) -> Mask:
    """In each layer, keep `counts[layer]` positions drawn uniformly without replacement."""
    tensors = {}
    for name, shape in shapes.items():
        keep = torch.zeros(math.prod(shape), dtype=torch.bool)
        keep[torch.randperm(keep.numel(), generator=generator)[:counts[name]]] = True
        tensors[name] = keep.reshape(shape)
    return Mask(tensors)


# ---- The three methods, as PaI runners -------------------------------------------------------

def _layer_generator(request: PaiRequest) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(request.seed, "pai-random-layers"))


def _floors(request: PaiRequest) -> dict[str, int]:
    sizes = {name: math.prod(shape) for name, shape in request.shapes().items()}
    return layer_floors(sizes, request.min_per_layer)


def _random_with_shares(request: PaiRequest, shares: dict[str, float]) -> MethodOutput:
    shapes = request.shapes()
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    counts = allocate_counts(request.count, shares, sizes, _floors(request))
    return MethodOutput(random_mask_with_counts(shapes, counts, _layer_generator(request)), scores=None, rounds=0)


def run_random(request: PaiRequest) -> MethodOutput:
    return _random_with_shares(request, uniform_shares(request.shapes()))


def run_erk(request: PaiRequest) -> MethodOutput:
    return _random_with_shares(request, erk_shares(request.shapes()))


def run_smart_ratio(request: PaiRequest) -> MethodOutput:
    shapes = request.shapes()
    counts = smart_ratio_counts(request.count, shapes, request.classifier, _floors(request))
    return MethodOutput(random_mask_with_counts(shapes, counts, _layer_generator(request)), scores=None, rounds=0)
