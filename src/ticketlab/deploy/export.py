"""`ticketlab export`: a ticket as a compact file, a shrunk dense state_dict, TorchScript or ONNX.

  compact      packed mask bits + live values (see compact.py); the masked ticket, losslessly
  dense        the physically shrunk network (dead neurons and channels removed, see shrink.py) as a
               plain safetensors state_dict with its architecture spec in the metadata
  torchscript  the shrunk network traced to TorchScript (deprecated upstream, still loadable by torch.jit.load)
  onnx         the shrunk network through torch.onnx's exporter with a dynamic batch dimension; needs the
               optional `onnx` and `onnxscript` packages (`pip install ticketlab[onnx]`)
Every format carries the ticket's trained weights when it has them, else θ_k. Files are written
atomically; `load_exported` reads any of them back into something callable on a batch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from torch import nn

from ticketlab.deploy.compact import is_compact, load_compact, save_compact
from ticketlab.deploy.shrink import shrink
from ticketlab.errors import TicketlabError
from ticketlab.files import safetensors_metadata, verify_checksum, write_bytes, write_checked_safetensors
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture
from ticketlab.ticket import Ticket, load_ticket

FORMATS = ("compact", "dense", "torchscript", "onnx")
DENSE_KEY = "ticketlab-export"


@dataclass
class Loaded:
    """What `load_exported` returns: a callable on a batch, and, for torch models, the module and mask."""
    kind: str                      # ticket, compact, dense, torchscript, onnx
    run: object                    # batch tensor -> logits tensor
    module: nn.Module | None       # the torch module (None for ONNX)
    mask: Mask | None              # the ticket's mask (ticket and compact files)
    input_shape: tuple[int, ...]
    meta: dict


def ticket_model(ticket: Ticket, weights: str = "auto") -> nn.Module:
    """The ticket's model with its trained weights (or θ_k with weights="init"), mask applied, in eval mode."""
    if weights not in ("auto", "trained", "init"):
        raise TicketlabError(f"unknown --weights {weights!r}; use trained, init or auto")
    if weights == "trained" and ticket.trained_state is None:
        raise TicketlabError("this ticket has no trained weights; train it first (ticketlab train-ticket) or use --weights init")
    state = ticket.trained_state if weights != "init" and ticket.trained_state is not None else ticket.init_state
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(state)
    ticket.mask.apply_(model)
    return model.eval()


def shrunk_model(model: nn.Module, mask: Mask) -> nn.Module:
    return shrink(model, mask)[0].eval()


def _atomic_from_writer(out: Path, write) -> None:
    """Let `write(path)` (a library that only writes to paths) fill a temp file, then move it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            data = f.read()
        write_bytes(out, data)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _quiet_exporter():
    """torch.onnx logs and warns at length about things that do not concern a plain CNN."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def export_onnx(model: nn.Module, input_shape, out: Path) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail with our message, not torch's)
        import onnxscript  # noqa: F401
    except ImportError:
        raise TicketlabError("ONNX export needs the onnx and onnxscript packages: pip install 'ticketlab[onnx]'") from None
    example = torch.zeros(2, *input_shape)
    with _quiet_exporter():
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
        _atomic_from_writer(out, program.save)


def export_torchscript(model: nn.Module, input_shape, out: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but still the TorchScript path
        traced = torch.jit.trace(model, torch.zeros(2, *input_shape))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    write_bytes(out, buffer.getvalue())


def export_dense(model: nn.Module, info: dict, out: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_checked_safetensors(out, state, DENSE_KEY, {"architecture": model.architecture, "info": info})


def provenance(ticket: Ticket) -> dict:
    keep = ("method", "dataset", "seed", "level", "rewind_step", "data_config")
    recorded = ticket.provenance.to_metadata()
    return {k: recorded[k] for k in keep if k in recorded} | {"density": ticket.mask.density()}


def export_ticket(ticket_path: str | Path, fmt: str, out: str | Path, half: bool = False, weights: str = "auto") -> dict:
    """Write `fmt` of the ticket to `out`; returns what was written (path, bytes, parameters)."""
    if fmt not in FORMATS:
        raise TicketlabError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if half and fmt != "compact":
        raise TicketlabError("--half applies to the compact format only")
    out = Path(out)
    if out.exists() and out.resolve() == Path(ticket_path).resolve():
        raise TicketlabError(f"--out {out} is the ticket itself; write the export to another file")
    ticket = load_ticket(ticket_path)
    model = ticket_model(ticket, weights)
    info = provenance(ticket)
    input_shape = tuple(ticket.architecture["input_shape"])
    if fmt == "compact":
        save_compact(out, ticket.architecture, ticket.mask, model.state_dict(), info, half=half)
        parameters = ticket.mask.num_kept() + sum(v.numel() for k, v in model.state_dict().items()
                                                  if k not in ticket.mask.tensors and v.is_floating_point())
    else:
        small = shrunk_model(model, ticket.mask)
        {"dense": lambda: export_dense(small, info, out),
         "torchscript": lambda: export_torchscript(small, input_shape, out),
         "onnx": lambda: export_onnx(small, input_shape, out)}[fmt]()
        parameters = sum(p.numel() for p in small.parameters())
    return {"format": fmt, "out": str(out), "bytes": out.stat().st_size, "parameters": parameters, "half": half}


def _safetensors_metadata(path: Path) -> dict | None:
    try:
        return safetensors_metadata(path.read_bytes())
    except (OSError, ValueError):
        return None


def load_exported(path: str | Path, torchscript: bool = False) -> Loaded:
    """Read a ticket file or any export back, ready to run on batches (eval mode).

    TorchScript is loaded only with `torchscript=True`: a TorchScript file holds code that runs when
    it is loaded, so only files the user trusts may be read that way (safetensors and ONNX hold data).
    """
    path = Path(path)
    if path.is_dir():
        raise TicketlabError(f"{path} is a folder; give a ticket file or an exported model")
    if not path.is_file():
        raise TicketlabError(f"{path} does not exist; give a ticket file or an exported model")
    if path.suffix == ".onnx":
        return _load_onnx(path)
    metadata = _safetensors_metadata(path)
    if metadata is None:
        if not torchscript:
            raise TicketlabError(f"{path} is neither a ticket nor a ticketlab export (safetensors) nor ONNX; if it is a "
                                 "TorchScript file you trust, pass --torchscript (loading TorchScript runs code from the file)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit is deprecated upstream; TorchScript files still load
                module = torch.jit.load(str(path)).eval()
        except Exception:  # noqa: BLE001 - any failure means: not a file we can read
            raise TicketlabError(f"{path} is neither a ticket, a ticketlab export (safetensors), TorchScript nor ONNX") from None
        return Loaded("torchscript", module, module, None, (), {})
    if "ticketlab" in metadata:
        ticket = load_ticket(path)
        model = ticket_model(ticket)
        return Loaded("ticket", model, model, ticket.mask, tuple(ticket.architecture["input_shape"]),
                      ticket.provenance.to_metadata())
    if is_compact(metadata):
        model, mask, meta = load_compact(path)
        model.eval()
        return Loaded("compact", model, model, mask, tuple(meta["architecture"]["input_shape"]), meta)
    if DENSE_KEY in metadata:
        meta = dense_metadata(path, metadata[DENSE_KEY])
        try:
            data = path.read_bytes()
            state = safetensors_load(data)
        except (SafetensorError, OSError, ValueError) as exc:
            raise TicketlabError(f"{path} is not a readable dense export ({exc}); export it again") from None
        if not verify_checksum(data, DENSE_KEY, meta):
            raise TicketlabError(f"{path} is damaged or was edited (checksum mismatch); export it again")
        model = model_from_architecture(meta["architecture"])
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise TicketlabError(f"{path}: the stored weights do not fit its architecture "
                                 f"({str(exc).splitlines()[-1].strip()}); export it again") from None
        model.eval()
        return Loaded("dense", model, model, None, tuple(meta["architecture"]["input_shape"]), meta)
    raise TicketlabError(f"{path} is a safetensors file but not one ticketlab wrote (no ticketlab metadata)")


def dense_metadata(path: Path, text: str) -> dict:
    """The JSON metadata of a dense export, checked field by field (the checksum shows edits, not crafted files)."""
    try:
        meta = json.loads(text)
    except ValueError:
        raise TicketlabError(f"{path}: its {DENSE_KEY} metadata is not JSON; the file is damaged, export it again") from None
    problem = None
    if not isinstance(meta, dict):
        problem = f"is a {type(meta).__name__}, not an object"
    elif not isinstance(meta.get("architecture"), dict):
        problem = "has no architecture object"
    elif not isinstance(meta.get("checksum"), str):
        problem = "has no checksum"
    elif not isinstance(meta.get("info", {}), dict):
        problem = "has an info field that is not an object"
    elif not isinstance(meta["architecture"].get("input_shape"), list):
        problem = "has an architecture without an input_shape list"
    if problem:
        raise TicketlabError(f"{path}: its {DENSE_KEY} metadata {problem}; the file is damaged, export it again")
    return meta


def _load_onnx(path: Path) -> Loaded:
    try:
        import onnxruntime
    except ImportError:
        raise TicketlabError("running an ONNX file needs onnxruntime: pip install 'ticketlab[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise TicketlabError(f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    name = session.get_inputs()[0].name

    def run(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: batch.detach().cpu().numpy()})[0])
    shape = tuple(d for d in session.get_inputs()[0].shape[1:])
    return Loaded("onnx", run, None, None, shape, {})
