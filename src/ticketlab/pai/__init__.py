"""Pruning at initialization (PaI): masks from scores computed before (or early in) training.

    result = find_mask("synflow", model, data, density=0.05, seed=0)
    result.mask, result.scores, result.collapsed_layers, result.info

Methods (docs/methods.md, Pruning at initialization), looked up by name in `PAI_METHODS`: random,
erk, smart-ratio (random masks with chosen layer densities), magnitude, snip, iter-snip, force,
grasp, grasp-abs, synflow. Every method keeps exactly round(density · d) weights. `ablations` holds
the mask transforms of the sanity checks (layer-wise shuffle, global random, inversion by scores).

Modules: find (entry point), methods (registry), selection (exact-count top-k with floors),
layerwise (random masks with layer densities), saliency (magnitude, SNIP), grasp, iterative
(iter-SNIP, FORCE), synflow, masked_net (autograd through a masked copy), scoring_data (which
examples are scored), request (the dataclasses passed between them).
"""

from ticketlab.pai.ablations import invert_by_scores, random_global, shuffle_layerwise
from ticketlab.pai.find import PaiResult, find_mask
from ticketlab.pai.methods import PAI_METHODS, MethodInfo, method_names

__all__ = [
    "PAI_METHODS",
    "MethodInfo",
    "PaiResult",
    "find_mask",
    "invert_by_scores",
    "method_names",
    "random_global",
    "shuffle_layerwise",
]
