"""The Ticket: (architecture, mask, θ_k, provenance), and its one file format.

A ticket file is safetensors holding the mask as packed bits (`mask/<name>`), the rewind weights θ_k
as a full state_dict (`init/<key>`), optionally the trained weights (`trained/<key>`), and JSON
metadata under the key "ticketlab": format version, architecture spec, dataset, method, seeds,
rewind step, overall and per-layer density, and a SHA-256 checksum of the whole content (every
tensor, the header that locates them and all metadata), so any edit is refused on load. Timings
(keys ending in `seconds` or `speedup`) are measurements of one machine, not content: they live in
`<stem>.timings.json` beside the ticket, so identical runs give byte-identical ticket files and a
ticket's checksum names its content. docs/format.md describes the layout.

A ticket's provenance (dataset, recipe, method, seeds, rewind step, metrics, ...) is a `Provenance`
(provenance.py); `Ticket.recipe()` and `Ticket.data_config()` give the configs it records.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load

from ticketlab.config import DataConfig, TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.files import (checked_metadata, read_json, verify_checksum, write_checked_safetensors,
                             write_json)
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture
from ticketlab.provenance import RECORDED, Provenance, recorded_config

FORMAT_VERSION = 2  # 2: the checksum covers metadata and header too; timings moved beside the file
METADATA_KEY = "ticketlab"
DERIVED = ("format_version", "architecture", "density", "layers", "kept", "prunable", "mask_shapes", "checksum")


@dataclass
class Ticket:
    architecture: dict                      # {"name", "input_shape", "num_classes"}: rebuilds the model
    mask: Mask
    init_state: dict[str, torch.Tensor]     # θ_k, the weights training starts from (mask applied)
    trained_state: dict[str, torch.Tensor] | None = None
    provenance: Provenance = field(default_factory=Provenance)  # dataset, recipe, method, seeds, metrics...
    path: Path | None = field(default=None, compare=False)  # the file it was loaded from or saved to

    def __post_init__(self):
        if not isinstance(self.provenance, Provenance):
            raise TicketlabError(f"a Ticket's provenance must be a Provenance; got a {type(self.provenance).__name__}")

    def recipe(self) -> TrainConfig:
        """The recipe that trained this ticket: a copy of the TrainConfig it records. A ticket that records
        none (one made in memory without it) gives the default TrainConfig() with a NoRecipeWarning saying
        so; test `provenance.train_config is None` to refuse such a ticket instead."""
        if self.provenance.train_config is None:
            warnings.warn(f"{self._name()} records no training recipe; using the default TrainConfig()",
                          NoRecipeWarning, stacklevel=2)
            return TrainConfig()
        return replace(self.provenance.train_config)

    def data_config(self) -> DataConfig:
        """A copy of the DataConfig this ticket was trained on; one line of error when it records none."""
        if self.provenance.data_config is None:
            raise TicketlabError(f"{self._name()} records no dataset (data_config); give the data yourself")
        return replace(self.provenance.data_config)

    def _name(self) -> str:
        return f"ticket {self.path}" if self.path is not None else "the ticket"

    def metadata(self) -> dict:
        return {
            **self.provenance.to_metadata(),
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "density": self.mask.density(),
            "layers": self.mask.layer_densities(),
            "kept": self.mask.num_kept(),
            "prunable": self.mask.num_total(),
            "mask_shapes": self.mask.shapes(),
        }

    def save(self, path: str | Path) -> None:
        """Write the ticket atomically; its timings first, beside it, so a ticket present is a ticket complete."""
        path = Path(path)
        tensors = {f"mask/{n}": t for n, t in self.mask.packed().items()}
        tensors.update({f"init/{k}": v for k, v in self.init_state.items()})
        if self.trained_state is not None:
            tensors.update({f"trained/{k}": v for k, v in self.trained_state.items()})
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta, timings = split_timings(self.metadata())
        if timings:
            write_json(timings_path(path), timings)
        else:
            timings_path(path).unlink(missing_ok=True)
        write_checked_safetensors(path, tensors, METADATA_KEY, meta)
        self.path = path


class NoRecipeWarning(UserWarning):
    """Ticket.recipe() on a ticket that records no recipe: the default TrainConfig() stands in."""


def timings_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".timings.json")


def is_timing(key: str) -> bool:
    # "machine": the threads and load a training ran with, which differ between identical runs
    return key.endswith(("seconds", "speedup")) or key == "machine"


def split_timings(meta: dict) -> tuple[dict, dict]:
    """(the metadata without timings, the timings alone), nested dicts followed."""
    content, timings = {}, {}
    for key, value in meta.items():
        if is_timing(key):
            timings[key] = value
        elif isinstance(value, dict):
            content[key], inner = split_timings(value)
            if inner:
                timings[key] = inner
        else:
            content[key] = value
    return content, timings


def _merge(meta: dict, timings: dict) -> dict:
    out = dict(meta)
    for key, value in timings.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read(path: str | Path) -> tuple[dict, bytes]:
    """The checked metadata (timings merged back in) and the bytes of a ticket file."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"ticket file {path} does not exist" if not path.exists() else
                             f"{path} is not a file; give a ticket.safetensors file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TicketlabError(f"cannot read ticket file {path}: {exc.strerror}") from None
    meta = checked_metadata(data, METADATA_KEY)
    if meta is None:
        raise TicketlabError(f"{path} is not a ticketlab ticket file (no ticket metadata); give a ticket.safetensors "
                             "written by ticketlab")
    if meta.get("format_version") != FORMAT_VERSION:
        raise TicketlabError(f"{path} has ticket format version {meta.get('format_version')}, this ticketlab reads "
                             f"version {FORMAT_VERSION}; re-create the ticket with this version")
    if not verify_checksum(data, METADATA_KEY, meta):
        raise TicketlabError(f"ticket file {path} is damaged or was edited (checksum mismatch); re-create it or "
                             "restore a copy")
    check_metadata(meta, path)
    timings = timings_path(path)
    if timings.is_file():
        try:
            stored = read_json(timings)
        except TicketlabError:
            stored = None
        if isinstance(stored, dict):
            meta = _merge(meta, stored)
    return meta, data


def read_metadata(path: str | Path) -> dict:
    """The ticket's metadata, checked against its checksum, with its timings."""
    return _read(path)[0]


def load_ticket(path: str | Path) -> Ticket:
    meta, data = _read(path)
    try:
        tensors = safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise TicketlabError(f"ticket file {path} is damaged ({exc}); re-create it or restore a copy") from None
    groups: dict[str, dict[str, torch.Tensor]] = {"mask": {}, "init": {}, "trained": {}}
    for key, value in tensors.items():
        group, _, name = key.partition("/")
        if group not in groups:
            raise TicketlabError(f"ticket file {path} holds an unknown tensor {key!r}; it was not written by ticketlab")
        groups[group][name] = value
    packed, shapes = groups["mask"], meta["mask_shapes"]
    if set(packed) != set(shapes) or any(v.dtype != torch.uint8 or v.dim() != 1 for v in packed.values()):
        raise TicketlabError(f"ticket file {path}: its mask tensors do not match its recorded mask shapes; it was not "
                             "written by ticketlab")
    mask = Mask.from_packed(packed, shapes)
    provenance = Provenance.from_metadata({k: v for k, v in meta.items() if k not in DERIVED}, path)
    ticket = Ticket(meta["architecture"], mask, groups["init"], groups["trained"] or None, provenance, Path(path))
    check_ticket(ticket, path)
    return ticket


# The metadata's fields and their JSON types; provenance fields are optional, derived ones required.
_NUMBER = (int, float)
_FIELDS = {
    "format_version": int, "architecture": dict, "density": _NUMBER, "layers": dict, "kept": int, "prunable": int,
    "mask_shapes": dict, "checksum": str, **RECORDED,
}


def check_metadata(meta: dict, path) -> None:
    """Every field a reader relies on is there with its type: a crafted file gets one line, not a traceback."""
    def bad(what: str) -> TicketlabError:
        return TicketlabError(f"ticket file {path}: metadata {what}; it was not written by ticketlab")

    for key, kind in _FIELDS.items():
        if key in DERIVED and key not in meta:
            raise bad(f"field {key!r} is missing")
        value = meta.get(key)
        if key in meta and (not isinstance(value, kind) or isinstance(value, bool)):
            raise bad(f"field {key!r} has the wrong type ({type(value).__name__})")
    arch = meta["architecture"]
    shape = arch.get("input_shape")
    if (not isinstance(arch.get("name"), str) or not _ints(shape, 1) or not _ints([arch.get("num_classes")], 1)):
        raise bad("field 'architecture' needs a name, an input_shape of positive integers and num_classes")
    if not meta["mask_shapes"] or not all(isinstance(k, str) and _ints(v, 0) for k, v in meta["mask_shapes"].items()):
        raise bad("field 'mask_shapes' must map layer names to shapes")
    if not all(isinstance(k, str) and isinstance(v, _NUMBER) for k, v in meta["layers"].items()):
        raise bad("field 'layers' must map layer names to densities")
    for key in ("metrics", "search_cost"):
        for name, value in meta.get(key, {}).items():
            if value is not None and not isinstance(value, (*_NUMBER, dict)) or isinstance(value, bool):
                raise bad(f"{key}.{name} is not a number")
    for key, cls in (("train_config", TrainConfig), ("data_config", DataConfig)):
        if key in meta:
            recorded_config(meta, key, cls, path)


def _ints(values, least: int) -> bool:
    return (isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= least
                                               for v in values) and math.prod(values) < 2 ** 40)


def check_ticket(ticket: Ticket, path) -> None:
    """The weights fit the recorded architecture and are finite: a file that passes its checksum may
    still have been written for another model, or from a diverged training."""
    try:
        expected = {k: v.shape for k, v in model_from_architecture(ticket.architecture).state_dict().items()}
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError) as exc:
        raise TicketlabError(f"ticket file {path}: its architecture cannot be built ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:120]}); it was not written by ticketlab") from None
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

