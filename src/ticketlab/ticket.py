"""The Ticket: (architecture, mask, θ_k, provenance), and its one file format.

A ticket file is safetensors holding the mask as packed bits (`mask/<name>`), the rewind weights θ_k
as a full state_dict (`init/<key>`), optionally the trained weights (`trained/<key>`), and JSON
metadata under the key "ticketlab": format version, architecture spec, dataset, method, seeds,
rewind step, overall and per-layer density, and a SHA-256 checksum of every stored tensor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ticketlab.errors import TicketlabError
from ticketlab.files import write_safetensors
from ticketlab.mask import Mask

FORMAT_VERSION = 1


@dataclass
class Ticket:
    architecture: dict                      # {"name", "input_shape", "num_classes"}: rebuilds the model
    mask: Mask
    init_state: dict[str, torch.Tensor]     # θ_k, the weights training starts from (mask applied)
    trained_state: dict[str, torch.Tensor] | None = None
    info: dict = field(default_factory=dict)  # provenance: dataset, method, seed, rewind_step, metrics...

    def metadata(self) -> dict:
        return {
            **self.info,
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "density": self.mask.density(),
            "layers": self.mask.layer_densities(),
            "kept": self.mask.num_kept(),
            "prunable": self.mask.num_total(),
            "mask_shapes": self.mask.shapes(),
        }

    def save(self, path: str | Path) -> None:
        tensors = {f"mask/{n}": t for n, t in self.mask.packed().items()}
        tensors.update({f"init/{k}": v for k, v in self.init_state.items()})
        if self.trained_state is not None:
            tensors.update({f"trained/{k}": v for k, v in self.trained_state.items()})
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = self.metadata()
        meta["checksum"] = _checksum(tensors)
        write_safetensors(path, tensors, {"ticketlab": json.dumps(meta, sort_keys=True)})


def read_metadata(path: str | Path) -> dict:
    """The ticket's metadata without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"ticket file {path} does not exist")
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if not 0 < header_len < 100_000_000:
                raise ValueError
            header = json.loads(f.read(header_len))
        meta = json.loads(header["__metadata__"]["ticketlab"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise TicketlabError(f"{path} is not a ticketlab ticket file (no ticket metadata); give a ticket.safetensors written by ticketlab") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise TicketlabError(f"{path} has ticket format version {meta.get('format_version')}, this ticketlab reads version {FORMAT_VERSION}")
    return meta


def load_ticket(path: str | Path) -> Ticket:
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TicketlabError(f"ticket file {path} is damaged ({exc}); re-create it or restore a copy") from None
    if _checksum(tensors) != meta.get("checksum"):
        raise TicketlabError(f"ticket file {path} is damaged (checksum mismatch); re-create it or restore a copy")
    groups: dict[str, dict[str, torch.Tensor]] = {"mask": {}, "init": {}, "trained": {}}
    for key, value in tensors.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = value
    mask = Mask.from_packed(groups["mask"], meta["mask_shapes"])
    info = {k: v for k, v in meta.items() if k not in {"format_version", "architecture", "density", "layers", "kept", "prunable", "mask_shapes", "checksum"}}
    ticket = Ticket(meta["architecture"], mask, groups["init"], groups["trained"] or None, info)
    check_ticket(ticket, path)
    return ticket


def check_ticket(ticket: Ticket, path) -> None:
    """The weights fit the recorded architecture and are finite: a file that passes its checksum may
    still have been written for another model, or from a diverged training."""
    from ticketlab.models import model_from_architecture
    expected = {k: v.shape for k, v in model_from_architecture(ticket.architecture).state_dict().items()}
    for group, state in (("initial", ticket.init_state), ("trained", ticket.trained_state)):
        if state is None:
            continue
        wrong = sorted(k for k in set(expected) | set(state) if k not in state or k not in expected
                       or tuple(state[k].shape) != tuple(expected[k]))
        if wrong:
            raise TicketlabError(f"ticket file {path}: its {group} weights do not fit the architecture "
                                 f"{ticket.architecture['name']} (first mismatch: {wrong[0]}); it was made for another model")
        bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if bad is not None:
            raise TicketlabError(f"ticket file {path}: {group} weight {bad} holds NaN or infinite values "
                                 "(a diverged training?); retrain it or use another ticket")
    for name, shape in ticket.mask.shapes().items():
        if tuple(expected.get(name, ())) != tuple(shape):
            raise TicketlabError(f"ticket file {path}: the mask of {name} does not fit the architecture "
                                 f"{ticket.architecture['name']}; it was made for another model")


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous().reshape(-1)
        digest.update(key.encode())
        digest.update(str(t.dtype).encode())
        digest.update(str(list(t.shape)).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
