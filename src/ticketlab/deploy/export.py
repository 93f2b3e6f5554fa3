"""`ticketlab export`: a ticket as a compact file, a shrunk dense state_dict, TorchScript or ONNX.

  compact      packed mask bits + live values (see compact.py); the masked ticket, losslessly
  dense        the physically shrunk network (dead neurons and channels removed, see shrink.py) as a
               plain safetensors state_dict with its architecture spec in the metadata
  torchscript  the shrunk network traced to TorchScript (deprecated upstream, still loadable by torch.jit.load)
  onnx         the shrunk network through torch.onnx's exporter with a dynamic batch dimension; needs the
               optional `onnx` and `onnxscript` packages (`pip install 'ticketlab[onnx]'`)
Every format carries the ticket's trained weights when it has them, else θ_k. Files are written
atomically; `load_exported` reads any of them back into something callable on a batch.

Inputs: a ticket (and its compact file) takes inputs standardized per channel with its training
data's mean and std, as ticketlab trains on them. The deployable formats (dense, torchscript, onnx)
take raw inputs instead (pixels scaled to [0, 1], or the values as the dataset gives them) in the
model's input shape: TorchScript and ONNX have the standardization folded in as their first
operation, and a dense file stores the mean and std, which `load_exported` applies. Each records its
input convention (`input` in the metadata: docs/format.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from ticketlab.errors import TicketlabError, missing_extra
from ticketlab.files import safetensors_metadata, verify_checksum, write_bytes, write_checked_safetensors
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture
from ticketlab.runtime import load_data_config
from ticketlab.ticket import Ticket, load_ticket

FORMATS = ("compact", "dense", "torchscript", "onnx")
DENSE_KEY = "ticketlab-export"
RAW_INPUTS_PREFIX = "network."  # RawInputs' parameter names: the network's behind this prefix
METADATA_KEY = "ticketlab"  # the input convention in TorchScript (an extra file, .json) and ONNX (metadata_props)


@dataclass
class Loaded:
    """What `load_exported` returns: a callable on a batch, and, for torch models, the module and mask."""
    kind: str                      # ticket, compact, dense, torchscript, onnx
    run: object                    # batch tensor -> logits tensor
    module: nn.Module | None       # the torch module (None for ONNX)
    mask: Mask | None              # the ticket's mask (ticket and compact files)
    input_shape: tuple[int, ...]
    meta: dict
    # (mean, std) the file standardizes raw inputs with itself (feed it raw inputs); None: it takes
    # standardized inputs, as a ticket does. For a dense file, `run` applies it and `module` does not.
    normalization: tuple[torch.Tensor, torch.Tensor] | None = None


class RawInputs(nn.Module):
    """A network behind the standardization it was trained with, so that it takes raw inputs. Its
    parameters are the network's under the prefix `network.` (RAW_INPUTS_PREFIX)."""

    def __init__(self, network: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.network = network
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("std", std.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network((x - self.mean) / self.std)  # as ticketlab's data loading standardizes


def training_normalization(ticket: Ticket, data_root: str | None = None, data=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel (mean, std) the ticket's inputs were standardized with: its training data's,
    read from `data` when given, else loaded with the data config the ticket records; (0, 1) for a
    Dataset ticketlab never standardized (made directly), whose inputs the export takes as given."""
    if data is None:
        try:
            config = ticket.data_config()
            if data_root is not None:
                config = dataclasses.replace(config, data_root=data_root)
            data = load_data_config(config)
        except TicketlabError as exc:
            raise TicketlabError(f"exports take raw inputs and fold in the standardization of the ticket's training "
                                 f"data, which could not be read ({exc}); give --data-root, or data= to tl.export") from None
    if getattr(data, "normalization", None) is None:  # a Dataset made directly: its inputs are used as given
        shape = (1, data.input_shape[0]) + (1,) * (len(data.input_shape) - 1)
        return torch.zeros(shape), torch.ones(shape)
    mean, std = data.normalization
    return mean, std


def input_convention(input_shape, mean: torch.Tensor, std: torch.Tensor) -> dict:
    """What an export takes, as recorded in its file: raw inputs of `input_shape` and the statistics it
    standardizes them with itself (one value per channel)."""
    return {"inputs": "raw", "shape": list(input_shape), "mean": [float(v) for v in mean.flatten()],
            "std": [float(v) for v in std.flatten()],
            "description": "raw inputs: pixels scaled to [0, 1] (the values as the dataset gives them for "
                           "non-image data) in the dataset's layout; the model standardizes them per channel with "
                           "the training set's mean and std"}


def normalization_of(convention: dict | None, input_shape) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, std) shaped to broadcast on a batch, from a recorded input convention (None: none recorded)."""
    if not isinstance(convention, dict) or convention.get("inputs") != "raw":
        return None
    try:
        mean, std = (torch.tensor(convention[k], dtype=torch.float32) for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError):
        raise TicketlabError("the file's input convention is damaged (mean and std per channel); export it again") from None
    shape = (1, len(mean)) + (1,) * max(0, len(input_shape) - 1)
    if len(mean) != len(std) or not len(mean) or (input_shape and len(mean) != input_shape[0]):
        raise TicketlabError("the file's input convention does not fit its input shape; export it again")
    return mean.reshape(shape), std.reshape(shape)


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


def export_onnx(model: nn.Module, input_shape, out: Path, recorded: dict | None = None) -> None:
    """`model` through torch.onnx with a dynamic batch dimension; `recorded` (its input convention and
    provenance) goes into the file's metadata_props as JSON."""
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail with our message, not torch's)
        import onnxscript  # noqa: F401
    except ImportError:
        raise missing_extra("ONNX export needs the onnx and onnxscript packages", "onnx") from None
    example = torch.zeros(2, *input_shape)
    with _quiet_exporter():
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))

        def save_with_convention(path: str) -> None:
            program.save(path)
            if recorded is None:
                return
            proto = onnx.load(path)
            entry = proto.metadata_props.add()
            entry.key, entry.value = METADATA_KEY, json.dumps(recorded, sort_keys=True)
            onnx.save(proto, path)
        _atomic_from_writer(out, save_with_convention)


def export_torchscript(model: nn.Module, input_shape, out: Path, recorded: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but still the TorchScript path
        traced = torch.jit.trace(model, torch.zeros(2, *input_shape))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={f"{METADATA_KEY}.json": json.dumps(recorded, sort_keys=True)})
    write_bytes(out, buffer.getvalue())


def export_dense(model: nn.Module, info: dict, out: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_checked_safetensors(out, state, DENSE_KEY, {"architecture": model.architecture, "info": info})


def provenance(ticket: Ticket) -> dict:
    keep = ("method", "dataset", "seed", "level", "rewind_step", "data_config")
    recorded = ticket.provenance.to_metadata()
    return {k: recorded[k] for k in keep if k in recorded} | {"density": ticket.mask.density()}


def export_ticket(ticket_path: str | Path, fmt: str, out: str | Path, half: bool = False, weights: str = "auto",
                  data_root: str | None = None, data=None, normalization: tuple | None = None) -> dict:
    """Write `fmt` of the ticket to `out`; returns what was written (path, bytes, parameters, inputs).

    dense, torchscript and onnx take raw inputs: the standardization of the ticket's training data
    (loaded from its data config and `data_root`, or `data` when given, or `normalization` = (mean,
    std) itself) goes into the file."""
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
        inputs = "standardized"
    else:
        mean, std = normalization or training_normalization(ticket, data_root, data)
        convention = input_convention(input_shape, mean, std)
        small = shrunk_model(model, ticket.mask)
        {"dense": lambda: export_dense(small, info | {"input": convention}, out),
         "torchscript": lambda: export_torchscript(RawInputs(small, mean, std).eval(), input_shape, out,
                                                   {"input": convention, "info": info}),
         "onnx": lambda: export_onnx(RawInputs(small, mean, std).eval(), input_shape, out,
                                     {"input": convention, "info": info})}[fmt]()
        parameters = sum(p.numel() for p in small.parameters())
        inputs = "raw"
    return {"format": fmt, "out": str(out), "bytes": out.stat().st_size, "parameters": parameters, "half": half,
            "inputs": inputs}


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
        extra = {f"{METADATA_KEY}.json": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit is deprecated upstream; TorchScript files still load
                module = torch.jit.load(str(path), _extra_files=extra).eval()
        except Exception:  # noqa: BLE001 - any failure means: not a file we can read
            raise TicketlabError(f"{path} is neither a ticket, a ticketlab export (safetensors), TorchScript nor ONNX") from None
        recorded = _recorded(path, extra[f"{METADATA_KEY}.json"])
        convention = recorded.get("input")
        shape = tuple(convention.get("shape", ())) if isinstance(convention, dict) else ()
        # A TorchScript file of another tool (or an older ticketlab) records nothing: taken as the ticket takes inputs.
        return Loaded("torchscript", module, module, None, shape, recorded, normalization=normalization_of(convention, shape))
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
        shape = tuple(meta["architecture"]["input_shape"])
        normalization = normalization_of(meta.get("info", {}).get("input"), shape)
        if normalization is None:  # written before exports took raw inputs
            return Loaded("dense", model, model, None, shape, meta)
        return Loaded("dense", RawInputs(model, *normalization).eval(), model, None, shape, meta, normalization)
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
        raise missing_extra("running an ONNX file needs onnxruntime", "onnx") from None
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
    recorded = _recorded(path, session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, ""))
    return Loaded("onnx", run, None, None, shape, recorded, normalization=normalization_of(recorded.get("input"), shape))


def _recorded(path: Path, text: str) -> dict:
    """What a TorchScript or ONNX file records: {"input": its input convention, "info": its ticket's
    provenance}; {} when it records nothing (a file of another tool, or of an older ticketlab)."""
    if not text:
        return {}
    try:
        recorded = json.loads(text)
    except ValueError:
        recorded = None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("info", {}), dict):
        raise TicketlabError(f"{path}: its {METADATA_KEY} metadata is not a JSON object; the file is damaged, export it again")
    return recorded
