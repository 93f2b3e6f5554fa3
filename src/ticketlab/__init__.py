"""ticketlab: find, test, compress and protect lottery tickets.

The Python API (docs/api.md): `import ticketlab as tl; tl.imp(...)`. Its names load on first use, so
the command line starts without importing the training stack it does not need.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ticketlab.api": ("ControlsResult", "ImpLevel", "ImpRun", "InferResult", "PaiSweepResult", "ProfileResult",
                      "RobustnessResult", "SanityResult", "StabilityResult", "StructuredResult", "SuperticketsResult",
                      "SweepResult", "TrainResult", "TransferResult", "controls", "create_model", "export",
                      "filter_tickets", "find_supertickets", "frontier", "imp", "infer", "layer_tickets", "load_dataset", "load_ticket",
                      "pai_sweep", "preset", "presets", "profile", "progress_every", "prune", "report", "robustness", "sanity",
                      "stability", "sweep", "train", "transfer"),
    "ticketlab.config": ("DataConfig", "ModelConfig", "PaiConfig", "PruneConfig", "TrainConfig"),
    "ticketlab.cts.config": ("CtsConfig",),
    "ticketlab.data": ("Dataset",),
    "ticketlab.errors": ("TicketlabError",),
    "ticketlab.mask": ("Mask",),
    "ticketlab.provenance": ("Provenance",),
    "ticketlab.ticket": ("NoRecipeWarning", "Ticket"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'ticketlab' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__():
    return sorted(set(globals()) | set(_WHERE))

