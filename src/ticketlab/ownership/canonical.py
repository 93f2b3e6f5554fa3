"""A model as a thief would publish it, read into one canonical form that free transformations do not change.

Loading (`load_model`): a ticket file (trained weights with the mask applied), a ticketlab compact
or dense export, a plain safetensors state_dict, a PyTorch state_dict (.pt/.pth, loaded with
weights_only) or an ONNX file (its initializers, read with the `onnx` package: by parameter name, or,
when the names are not the model's, by the order of the Conv/Gemm/MatMul nodes). Hidden units may
have been removed physically (a shrunk export): site dimensions may be smaller than the claim's.

Canonical form (`canonical`), every step leaving the function unchanged:
  1. BatchNorm folded into the layer right before it (eval mode): rows × γ/√(var+ε), bias
     (b − μ)·γ/√(var+ε) + β. An export that already folded it has no BatchNorm: nothing to do.
  2. Dead units zeroed: a site unit no producer writes (all rows and biases 0) reads as 0, so its
     consumers' columns do nothing; one no consumer reads does nothing, so its rows do not either.
  3. Balanced: each site unit j gets the positive scale c_j (rows and biases × c_j, consumer columns
     ÷ c_j) that minimises the total squared weight Σ‖W‖² over all such rescalings — a strictly
     convex problem in log c whose minimiser, where every unit has ‖in_j‖ = ‖out_j‖, is unique on
     each rescaling orbit. Two models that differ by any per-unit rescaling (c in [1e-4, 1e4] or
     beyond) reach the same balanced weights, up to floating-point rounding. Solved by coordinate
     steps c_j = (‖out_j‖ / ‖in_j‖)^(1/2) until every step is below 1e-9 in log.
Permutations are undone later, by alignment (align.py); densification is read through by ranks.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.deploy.compact import is_compact
from ticketlab.deploy.export import DENSE_KEY, RAW_INPUTS_PREFIX, load_exported
from ticketlab.errors import TicketlabError, missing_extra
from ticketlab.models import model_from_architecture
from ticketlab.ownership.structure import INPUT, OUTPUT, SITE, Structure, structure_of
from ticketlab.ticket import load_ticket

BALANCE_TOLERANCE = 1e-9
BALANCE_STEPS = 3000


@dataclass
class Canonical:
    """Per layer: weight as (out units, in units, block) and bias (out units), float64, canonical."""
    weights: dict[int, torch.Tensor]
    biases: dict[int, torch.Tensor]
    units: dict[int, int]           # site index -> units present
    balance_steps: int = 0


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's content: names, shapes and float32 values, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to(torch.float32).contiguous().cpu()
        digest.update(name.encode() + b"\x00" + str(list(tensor.shape)).encode() + b"\x00")
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# ---- loading -------------------------------------------------------------------------------------

def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (a zip holding code/ or constants.pkl), not a plain torch.save state dict."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def base_architecture(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "shapes"}


def load_model(path: str | Path, architecture: dict) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict of the weights the file computes with, kind of file)."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"model {path} does not exist; give a ticket, a safetensors or .pt state_dict, or an ONNX file")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path, architecture), "onnx"
    if path.suffix.lower() in (".pt", ".pth"):
        if is_torchscript(path):  # torch.load would hand it to torch.jit.load, which runs its code
            raise TicketlabError(f"{path} is TorchScript, whose loading runs code from the file; white-box "
                                 "verification reads weights only: give a state_dict, a ticket or an ONNX file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
            raise TicketlabError(f"{path} is not a PyTorch state_dict ({type(exc).__name__}); give the file torch.save wrote") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise TicketlabError(f"{path} does not hold a state_dict of tensors")
        return {k.removeprefix("module."): v for k, v in state.items()}, "pytorch"
    if len(head) < 8:
        raise TicketlabError(f"{path} is empty or truncated; give a ticket, a safetensors or .pt state_dict, or an ONNX file")
    return _load_safetensors(path, architecture)


def _load_safetensors(path: Path, architecture: dict):
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        raise TicketlabError(f"{path} is not a safetensors file; give a ticket, a safetensors or .pt state_dict, "
                             "or an ONNX file") from None
    if "ticketlab" in metadata:
        ticket = load_ticket(path)
        _same_architecture(ticket.architecture, architecture, path)
        state = ticket.trained_state if ticket.trained_state is not None else ticket.init_state
        return {k: (v * ticket.mask[k] if k in ticket.mask.tensors else v) for k, v in state.items()}, "ticket"
    if DENSE_KEY in metadata or is_compact(metadata):
        loaded = load_exported(path)
        _same_architecture(getattr(loaded.module, "architecture", None) or {}, architecture, path)
        return {k: v.detach() for k, v in loaded.module.state_dict().items()}, "export"
    return load_file(str(path)), "safetensors"


def _same_architecture(found: dict, expected: dict, path) -> None:
    if base_architecture(found) != base_architecture(expected):
        raise TicketlabError(f"{path} is a {found.get('name')} model, the record is about a {expected.get('name')} of "
                             f"another shape; give the record made for this model")


def _load_onnx(path: Path, architecture: dict) -> dict[str, torch.Tensor]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise missing_extra("reading an ONNX file needs the onnx package", "onnx") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types
        raise TicketlabError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    graph = model.graph
    # An export that takes raw inputs holds the network behind its standardization (RawInputs).
    tensors = {init.name.removeprefix(RAW_INPUTS_PREFIX): torch.from_numpy(numpy_helper.to_array(init).copy())
               for init in graph.initializer}
    expected = model_from_architecture(architecture).state_dict()
    if any(name.endswith(".weight") and name in expected for name in tensors):
        return {k: v for k, v in tensors.items() if k in expected}
    # Names not kept: take the layers' weights in the order their nodes run.
    structure = structure_of(architecture)
    found = []
    for node in graph.node:
        inputs = [name for name in node.input if name in tensors]
        if node.op_type == "Conv" and inputs:
            found.append((tensors[node.input[1]], tensors.get(node.input[2]) if len(node.input) > 2 else None))
        elif node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in tensors:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            weight = tensors[node.input[1]]
            found.append((weight if trans_b else weight.T, tensors.get(node.input[2]) if len(node.input) > 2 else None))
        elif node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in tensors:
            found.append((tensors[node.input[1]].T, None))
    if len(found) != len(structure.layers):
        raise TicketlabError(f"{path}: its {len(found)} Conv/Gemm/MatMul layers do not match the {len(structure.layers)} "
                             f"layers of {architecture.get('name')}; give the ONNX export of this model")
    state = {}
    for layer, (weight, bias) in zip(structure.layers, found):
        state[layer.weight] = weight.contiguous()
        if bias is not None:
            state[layer.bias or f"{layer.path}.bias"] = bias
    return state


# ---- the canonical form ----------------------------------------------------------------------------

def _site_units(state: dict, structure: Structure, what: str) -> dict[int, int]:
    units: dict[int, int] = {}

    def note(site: int, count: int, name: str):
        if units.setdefault(site, count) != count:
            raise TicketlabError(f"{what}: {name} has {count} units where other layers have {units[site]}; "
                                 "its hidden layers do not fit together")
    for layer in structure.layers:
        weight = state.get(layer.weight)
        if weight is None:
            raise TicketlabError(f"{what} has no {layer.weight}; it is not a {structure.name} (give the record made "
                                 "for this model)")
        if layer.out_site is not None:
            note(layer.out_site, weight.shape[0], layer.weight)
        if layer.in_site is not None:
            in_units, rest = divmod(weight.shape[1] * math.prod(weight.shape[2:]), layer.block)
            if rest:
                raise TicketlabError(f"{what}: {layer.weight} has shape {tuple(weight.shape)}, which does not fit {structure.name}")
            note(layer.in_site, in_units, layer.weight)
    for site in structure.sites:
        if units.get(site.index, 0) > site.units:
            raise TicketlabError(f"{what} has more units ({units[site.index]}) than {structure.name} in a hidden layer; "
                                 "it is not this model")
    return units


def canonical(state: dict[str, torch.Tensor], structure: Structure, what: str = "the model") -> Canonical:
    """The canonical form of a state dict of `structure`'s model (possibly shrunk, BatchNorm folded or not)."""
    units = _site_units(state, structure, what)
    weights, biases = {}, {}
    for index, layer in enumerate(structure.layers):
        weight = state[layer.weight].detach().to(torch.float64).cpu()
        if not torch.isfinite(weight).all():
            raise TicketlabError(f"{what}: {layer.weight} holds values that are not finite")
        in_units = units[layer.in_site] if layer.in_site is not None else layer.in_units
        rows = weight.shape[0]
        expected_rows = layer.out_units if layer.out_site is None else units[layer.out_site]
        if rows != expected_rows or weight.numel() != rows * in_units * layer.block:
            raise TicketlabError(f"{what}: {layer.weight} has shape {tuple(weight.shape)}, which does not fit {structure.name}")
        weight = weight.reshape(rows, in_units, layer.block).clone()
        bias = state.get(layer.bias) if layer.bias else state.get(f"{layer.path}.bias")
        bias = bias.detach().to(torch.float64).cpu().clone() if bias is not None else torch.zeros(rows, dtype=torch.float64)
        if layer.norm is not None and f"{layer.norm}.running_var" in state:
            scale, shift = _norm_affine(state, layer.norm, layer.norm_eps, rows)
            weight *= scale[:, None, None]
            bias = bias * scale + shift
        weights[index], biases[index] = weight, bias
    form = Canonical(weights, biases, units)
    _zero_dead(form, structure)
    form.balance_steps = _balance(form, structure)
    return form


def _norm_affine(state: dict, path: str, eps: float, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    def get(name, default):
        t = state.get(f"{path}.{name}")
        return t.detach().to(torch.float64).cpu() if t is not None else torch.full((rows,), default, dtype=torch.float64)
    gamma, beta, mean, var = get("weight", 1.0), get("bias", 0.0), get("running_mean", 0.0), get("running_var", 1.0)
    scale = gamma / torch.sqrt(var + eps)
    return scale, beta - mean * scale


def _in_out(form: Canonical, structure: Structure, site) -> tuple[torch.Tensor, torch.Tensor]:
    size = form.units[site.index]
    incoming = torch.zeros(size, dtype=torch.float64)
    outgoing = torch.zeros(size, dtype=torch.float64)
    for p in site.producers:
        incoming += form.weights[p].square().sum((1, 2)) + form.biases[p].square()
    for c in site.consumers:
        outgoing += form.weights[c].square().sum((0, 2))
    return incoming, outgoing


def _zero_dead(form: Canonical, structure: Structure) -> None:
    changed = True
    while changed:
        changed = False
        for site in structure.sites:
            incoming, outgoing = _in_out(form, structure, site)
            unwritten = (incoming == 0) & (outgoing > 0)
            unread = (outgoing == 0) & (incoming > 0)
            if unwritten.any():
                for c in site.consumers:
                    form.weights[c][:, unwritten] = 0
                changed = True
            if unread.any():
                for p in site.producers:
                    form.weights[p][unread] = 0
                    form.biases[p][unread] = 0
                changed = True


def _balance(form: Canonical, structure: Structure) -> int:
    for step in range(1, BALANCE_STEPS + 1):
        worst = 0.0
        for site in structure.sites:
            incoming, outgoing = _in_out(form, structure, site)
            live = (incoming > 0) & (outgoing > 0)
            if not live.any():
                continue
            log_c = torch.zeros_like(incoming)
            log_c[live] = 0.25 * (torch.log(outgoing[live]) - torch.log(incoming[live]))
            worst = max(worst, float(log_c.abs().max()))
            c = torch.exp(log_c)
            for p in site.producers:
                form.weights[p] *= c[:, None, None]
                form.biases[p] *= c
            for q in site.consumers:
                form.weights[q] /= c[None, :, None]
        if worst < BALANCE_TOLERANCE:
            return step
    return BALANCE_STEPS


def block_magnitudes(weight: torch.Tensor) -> torch.Tensor:
    """Largest |w| of every (out unit, in unit) block."""
    return weight.abs().amax(dim=2) if weight.numel() else torch.zeros(weight.shape[:2], dtype=weight.dtype)


__all__ = ["Canonical", "INPUT", "OUTPUT", "SITE", "block_magnitudes", "canonical", "file_sha256", "load_model",
           "weights_sha256"]
