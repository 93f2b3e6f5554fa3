"""The registry of pruning-at-initialization methods: name → what it is and the function that runs it.

Adding a method is writing `run(request) -> MethodOutput` in its own module and adding one entry
here. `score_order` is the method's score convention, which inversion and `invert_by_scores`
follow: "largest" keeps the highest scores, "smallest" keeps the lowest (GraSP), None means the
method has no per-weight scores (random layer-wise masks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ticketlab.errors import TicketlabError
from ticketlab.pai import grasp, iterative, layerwise, saliency, synflow
from ticketlab.pai.request import MethodOutput, PaiRequest


@dataclass(frozen=True)
class MethodInfo:
    description: str
    bn_mode: str | None       # BatchNorm mode while scoring: "train" (batch statistics), "eval", None (no forward)
    uses_data: bool           # needs training examples to score
    score_order: str | None   # "largest", "smallest", or None (no scores)
    default_iterations: int | None = None  # None: single shot (the `iterations` option does not apply)
    run: Callable[[PaiRequest], MethodOutput] = field(default=None, repr=False, compare=False)

    @property
    def iterative(self) -> bool:
        return self.default_iterations is not None


PAI_METHODS: dict[str, MethodInfo] = {
    "random": MethodInfo("random mask, every layer at the same density", None, False, None,
                         run=layerwise.run_random),
    "erk": MethodInfo("random mask with Erdős–Rényi-Kernel layer densities (RigL)", None, False, None,
                      run=layerwise.run_erk),
    "smart-ratio": MethodInfo("random mask with smart-ratio layer densities, classifier at 0.3 (Su et al. 2020)",
                              None, False, None, run=layerwise.run_smart_ratio),
    "magnitude": MethodInfo("keep the largest |θ| globally", None, False, "largest", run=saliency.run_magnitude),
    "snip": MethodInfo("SNIP: keep the largest |θ ⊙ ∂L/∂θ| (Lee et al. 2019)", "train", True, "largest",
                       run=saliency.run_snip),
    "iter-snip": MethodInfo("iterative SNIP: re-score the masked net over rounds, pruned weights stay dead "
                            "(de Jorge et al. 2021)", "train", True, "largest",
                            iterative.DEFAULT_ITERATIONS, run=iterative.run_iter_snip),
    "force": MethodInfo("FORCE: re-score all weights through the masked net over rounds (10 by default; the "
                        "authors' code runs 60, --iterations 60), pruned weights may return (de Jorge et al. 2021)",
                        "train", True, "largest",
                        iterative.DEFAULT_ITERATIONS, run=iterative.run_force),
    "grasp": MethodInfo("GraSP: S = −θ ⊙ Hg, keep the smallest S to preserve gradient flow (Wang et al. 2020)",
                        "train", True, "smallest", run=grasp.run_grasp),
    "grasp-abs": MethodInfo("GraSP variant keeping the largest |S|", "train", True, "largest",
                            run=grasp.run_grasp_abs),
    "synflow": MethodInfo("SynFlow: data-free iterative synaptic-flow scores |θ ⊙ ∂R/∂θ| (Tanaka et al. 2020)",
                          "eval", False, "largest", synflow.DEFAULT_ITERATIONS, run=synflow.run_synflow),
}


def method_names() -> list[str]:
    """The PaI method names, in registry order."""
    return list(PAI_METHODS)


def method_info(name: str) -> MethodInfo:
    info = PAI_METHODS.get(name) if isinstance(name, str) else None
    if info is None:
        raise TicketlabError(f"unknown pruning method {name!r}; known methods: {', '.join(PAI_METHODS)}")
    return info
