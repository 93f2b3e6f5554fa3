"""The compact ticket file: one bit per prunable weight plus only the live values.

Layout (safetensors): `mask/<name>` packed mask bits, `values/<name>` the live weights of that tensor
in row-major order (float32, or float16 with `half`), `state/<key>` every other entry of the
state_dict (biases, BatchNorm) in full, and JSON metadata under "ticketlab-compact": architecture,
mask shapes, value dtype, provenance and a SHA-256 checksum of the whole file but the checksum. In float32 it loads
back to exactly the weights it was made from; float16 rounds the live values (and says so).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load

from ticketlab.errors import TicketlabError
from ticketlab.files import checked_metadata, verify_checksum, write_checked_safetensors
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture

KEY = "ticketlab-compact"
FORMAT_VERSION = 2  # 2: the checksum covers the metadata and header too


def save_compact(path: str | Path, architecture: dict, mask: Mask, state: dict[str, torch.Tensor],
                 info: dict | None = None, half: bool = False) -> None:
    dtype = torch.float16 if half else torch.float32
    tensors = {f"mask/{n}": bits for n, bits in mask.packed().items()}
    for name in mask.names():
        tensors[f"values/{name}"] = state[name].detach().reshape(-1)[mask[name].reshape(-1)].to(dtype)
    tensors.update({f"state/{k}": v.detach() for k, v in state.items() if k not in mask.tensors})
    tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
    meta = {"format_version": FORMAT_VERSION, "architecture": architecture, "mask_shapes": mask.shapes(),
            "values_dtype": str(dtype).removeprefix("torch."), "info": info or {}}
    write_checked_safetensors(path, tensors, KEY, meta)


def is_compact(metadata: dict | None) -> bool:
    return bool(metadata) and KEY in metadata


def load_compact(path: str | Path) -> tuple[torch.nn.Module, Mask, dict]:
    """(model with the stored weights, its mask, metadata). Pruned weights are exact zeros."""
    path = Path(path)
    try:
        data = path.read_bytes()
        meta = checked_metadata(data, KEY)
        if meta is None:
            raise ValueError(f"no {KEY} metadata")
        tensors = safetensors_load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise TicketlabError(f"{path} is not a readable compact ticket file ({exc}); export it again") from None
    check_metadata(path, meta)
    if not verify_checksum(data, KEY, meta):
        raise TicketlabError(f"{path} is damaged or was edited (checksum mismatch); export it again")
    missing = [f"{kind}/{n}" for n in meta["mask_shapes"] for kind in ("mask", "values") if f"{kind}/{n}" not in tensors]
    if missing:
        raise TicketlabError(f"{path} lacks the tensors {missing[:3]}; the file is damaged, export it again")
    if any(tensors[f"mask/{n}"].dtype != torch.uint8 or not tensors[f"values/{n}"].is_floating_point()
           for n in meta["mask_shapes"]):
        raise TicketlabError(f"{path} stores masks or values of the wrong type; the file is damaged, export it again")
    mask = Mask.from_packed({n: tensors[f"mask/{n}"] for n in meta["mask_shapes"]}, meta["mask_shapes"])
    model = model_from_architecture(meta["architecture"])
    state = {k[len("state/"):]: v for k, v in tensors.items() if k.startswith("state/")}
    reference = model.state_dict()
    for name in mask.names():
        if name not in reference or list(reference[name].shape) != list(mask[name].shape):
            raise TicketlabError(f"{path}: the mask of {name} does not fit the model {meta['architecture'].get('name')}; "
                                 "the file is damaged, export it again")
        full = torch.zeros(reference[name].numel(), dtype=reference[name].dtype)
        values = tensors[f"values/{name}"]
        if values.numel() != int(mask[name].sum()):
            raise TicketlabError(f"{path}: {name} stores {values.numel()} values for {int(mask[name].sum())} live weights; the file is damaged")
        full[mask[name].reshape(-1)] = values.to(full.dtype)
        state[name] = full.reshape(reference[name].shape)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise TicketlabError(f"{path}: the stored weights do not fit its architecture "
                             f"({str(exc).splitlines()[-1].strip()}); export it again") from None
    return model, mask, meta


def check_metadata(path: Path, meta) -> None:
    """The compact metadata's fields and their types (the checksum shows edits, not crafted files)."""
    def bad(problem: str):
        raise TicketlabError(f"{path}: its {KEY} metadata {problem}; the file is damaged, export it again")
    if not isinstance(meta, dict):
        bad(f"is a {type(meta).__name__}, not an object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise TicketlabError(f"{path} has compact format version {meta.get('format_version')!r}; this ticketlab reads {FORMAT_VERSION}")
    if not isinstance(meta.get("checksum"), str):
        bad("has no checksum")
    if not isinstance(meta.get("architecture"), dict) or not isinstance(meta["architecture"].get("input_shape"), list):
        bad("has no architecture object with an input_shape list")
    shapes = meta.get("mask_shapes")
    if not isinstance(shapes, dict) or not all(
            isinstance(name, str) and isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            for name, shape in shapes.items()):
        bad("has no mask_shapes object of lists of sizes")
    if not isinstance(meta.get("info", {}), dict):
        bad("has an info field that is not an object")
