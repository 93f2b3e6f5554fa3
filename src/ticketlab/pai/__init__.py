"""Pruning at initialization (PaI): masks from scores computed before (or early in) training.

    result = find_mask("synflow", model, data, density=0.05, seed=0)
    result.mask, result.scores, result.collapsed_layers, result.info

Methods (docs/methods.md, Pruning at initialization), looked up by name in `PAI_METHODS`: random,
erk, smart-ratio (random masks with chosen layer densities), magnitude, snip, iter-snip, force,
grasp, grasp-abs, synflow. Every method keeps exactly round(density · d) weights. `ablations` holds
the mask transforms of the sanity checks (layer-wise shuffle, global random, inversion by scores).

Every mask-finding method (these, CTS and IMP/LTR) is also an entry of one registry, `MASK_METHODS`
(registry.py; the PaI methods register in registered.py, CTS in cts/, IMP and LTR in lth/): its family,
help, score order, recorded cost, and how it finds and checks a run's request. The jobs dispatch through it.

Modules: find (entry point), methods (the PaI registry), registry (all mask-finding methods), registered
(the PaI methods in it), selection (exact-count top-k with floors),
layerwise (random masks with layer densities), saliency (magnitude, SNIP), grasp, iterative
(iter-SNIP, FORCE), synflow, masked_net (autograd through a masked copy), scoring_data (which
examples are scored), request (the dataclasses passed between them).
"""

from ticketlab.pai.ablations import invert_by_scores, random_global, shuffle_layerwise
from ticketlab.pai.find import PaiResult, find_mask
from ticketlab.pai.methods import PAI_METHODS, MethodInfo, method_names
from ticketlab.pai.registry import (MASK_METHODS, MaskMethod, MaskRequest, SanityProcedure, finding_method,
                                    finding_method_names, mask_method, mask_methods, recorded_method, register)
from ticketlab.pai import registered  # noqa: F401  (registers the PaI methods)

__all__ = [
    "MASK_METHODS",
    "PAI_METHODS",
    "MaskMethod",
    "MaskRequest",
    "MethodInfo",
    "PaiResult",
    "SanityProcedure",
    "find_mask",
    "finding_method",
    "finding_method_names",
    "invert_by_scores",
    "mask_method",
    "mask_methods",
    "method_names",
    "random_global",
    "recorded_method",
    "register",
    "shuffle_layerwise",
]
