"""Checks of user input shared by the configs, the command line and the jobs: one TicketlabError each.

Every check runs before the first byte is written or the first training step runs: numbers are
finite and in range, training lengths are positive and bounded, devices exist, pruning keeps at
least one weight, output paths can be written. The limits guard against typos that would
otherwise run forever or fill the memory:

    MAX_ITERATIONS   10^8 training iterations (~ 2,000 epochs of ImageNet at batch 256; our
                     longest recipes run 10^5)
    MAX_LEVELS       1,000 pruning levels, each a full training (20% per level reaches 10^-97)
    MAX_PIXELS       1,024 pixels of --pad or --resize (larger images than any dataset here)
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path

from ticketlab.errors import TicketlabError

MAX_ITERATIONS = 10 ** 8
MAX_LEVELS = 1000
MAX_PIXELS = 1024
MAX_SEED = 2 ** 63 - 1

_STEP = re.compile(r"^\s*(\d+)\s*(ep|it)?\s*$")
_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu)(:\d+)?$")


# ---- numbers ---------------------------------------------------------------------------------

def is_real(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def real(flag: str, value, ok=lambda v: True, want: str = "a finite number") -> float:
    """`value` must be a finite number with ok(value); else '<flag> must be <want>, got <value>'."""
    if not is_real(value) or not ok(value):
        raise TicketlabError(f"{flag} must be {want}, got {value!r}")
    return value


def positive(flag: str, value) -> float:
    return real(flag, value, lambda v: v > 0, "a positive finite number")


def non_negative(flag: str, value) -> float:
    return real(flag, value, lambda v: v >= 0, "a finite number, 0 or more")


def fraction(flag: str, value, low_open: bool = True, high_open: bool = True) -> float:
    """A number in (0, 1), [0, 1), (0, 1] or [0, 1]."""
    interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
    want = "strictly between 0 and 1" if low_open and high_open else f"in {interval}"
    return real(flag, value, lambda v: (0 < v if low_open else 0 <= v) and (v < 1 if high_open else v <= 1), want)


def integer(flag: str, value, lowest: int | None = None, highest: int | None = None, optional: bool = False):
    """A whole number in [lowest, highest] (None too, with `optional`)."""
    if optional and value is None:
        return value
    if lowest is not None and highest is not None:
        want = f"a whole number from {lowest} to {highest:,}"
    elif lowest is not None:
        want = {0: "a whole number, 0 or more", 1: "a whole number, at least 1"}.get(lowest, f"a whole number >= {lowest}")
    else:
        want = "a whole number"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
            (lowest is not None and value < lowest) or (highest is not None and value > highest):
        raise TicketlabError(f"{flag} must be {want}, got {value!r}")
    return value


def boolean(flag: str, value) -> bool:
    if not isinstance(value, bool):
        raise TicketlabError(f"{flag} must be true or false, got {value!r}")
    return value


def text(flag: str, value, choices=None, optional: bool = False) -> str:
    if optional and value is None:
        return value
    if not isinstance(value, str):
        raise TicketlabError(f"{flag} must be text, got {value!r}")
    if choices is not None and value not in choices:
        raise TicketlabError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
    return value


def seed(flag: str, value) -> int:
    return integer(flag, value, 0, MAX_SEED)


# ---- training lengths ------------------------------------------------------------------------

def step_parts(spec, what: str) -> tuple[int, str]:
    """("40ep" | "500it" | "500" | 500) -> (count, unit); bad syntax is a TicketlabError."""
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        raise TicketlabError(f"bad {what} {spec!r}: write a whole number followed by 'ep' (epochs) or 'it' "
                             "(iterations), e.g. 40ep or 500it")
    if isinstance(spec, int):
        if spec < 0:
            raise TicketlabError(f"bad {what} {spec}: give 0 or more iterations")
        return spec, "it"
    match = _STEP.match(spec)
    if not match:
        raise TicketlabError(f"bad {what} {spec!r}: write a whole number followed by 'ep' (epochs) or 'it' "
                             "(iterations), e.g. 40ep or 500it")
    count, unit = int(match.group(1)), match.group(2)
    if unit is None and count != 0:  # 40 epochs or 40 iterations? a guess would silently change the run
        raise TicketlabError(f"bad {what} {spec!r}: give its unit, {count}ep (epochs) or {count}it (iterations)")
    return count, unit or "it"


def length(spec, what: str, positive_length: bool = False) -> str:
    """Check a training length or point: syntax, > 0 if asked, at most MAX_ITERATIONS (an epoch is at
    least one iteration, so a count of epochs is bounded the same way)."""
    count, unit = step_parts(spec, f"--{what}")
    if positive_length and count == 0:
        raise TicketlabError(f"--{what} {spec} is zero iterations; give a positive length")
    if count > MAX_ITERATIONS:
        raise TicketlabError(f"--{what} {spec} is more than the limit of {MAX_ITERATIONS:,} iterations; "
                             "give a shorter length")
    return spec


def iterations(spec, iterations_per_epoch: int) -> int:
    count, unit = step_parts(spec, "step")
    return count * iterations_per_epoch if unit == "ep" else count


def check_training_data(train, num_train: int, dataset: str, rewind_steps: dict[str, str] | None = None,
                        input_shape: tuple[int, ...] | None = None) -> int:
    """What needs the training split's size: the batch fits in it, the length in iterations is within
    MAX_ITERATIONS, and rewind points lie before the end (and, given the input shape, flip-crop
    augmentation has images to flip). Returns the training length in iterations."""
    if input_shape is not None and train.augment == "flip-crop" and len(input_shape) != 3:
        raise TicketlabError(f"--augment flip-crop needs images; {dataset} has inputs of shape {tuple(input_shape)}; "
                             "use --augment none or auto")
    if train.batch_size > num_train:
        raise TicketlabError(f"--batch-size {train.batch_size} is larger than the {num_train} training examples of "
                             f"{dataset}; choose at most {num_train}")
    per_epoch = -(-num_train // train.batch_size)
    total = iterations(train.steps, per_epoch)
    if total > MAX_ITERATIONS:
        raise TicketlabError(f"--steps {train.steps} is {total:,} iterations on {dataset} ({per_epoch} per epoch), more "
                             f"than the limit of {MAX_ITERATIONS:,}; give a shorter training")
    if iterations(train.eval_every, per_epoch) < 1:
        raise TicketlabError(f"--eval-every {train.eval_every} is zero iterations; give a positive interval")
    for flag, spec in (rewind_steps or {}).items():
        k = iterations(spec, per_epoch)
        if k >= total:
            raise TicketlabError(f"{flag} {spec} is iteration {k:,}, not before the end of training at iteration "
                                 f"{total:,} (--steps {train.steps}); choose an earlier rewind step or train longer")
    return total


# ---- devices ---------------------------------------------------------------------------------

def device_name(device) -> str:
    """The syntax of a torch device for training: cpu, cuda, cuda:N, mps or xpu."""
    if not isinstance(device, str) or not _DEVICE.match(device.strip()):
        raise TicketlabError(f"unknown --device {device!r}: give cpu, cuda, cuda:N (a GPU's index), mps or xpu")
    return device


def device_available(device: str) -> None:
    """Refuse a device this machine does not have (before any run directory exists)."""
    import torch
    device_name(device)
    kind, _, index = device.strip().partition(":")
    if kind == "cpu":
        return
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise TicketlabError(f"--device {device}: torch sees no CUDA GPU on this machine; use --device cpu")
        if index and int(index) >= count:
            raise TicketlabError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        return
    backend = getattr(torch.backends, kind, None) if kind == "mps" else getattr(torch, kind, None)
    if backend is None or not backend.is_available():
        raise TicketlabError(f"--device {device}: torch has no {kind} device on this machine; use --device cpu")


def precision_available(precision: str, device: str) -> None:
    """Refuse a training precision the device cannot run: fp16 autocast is for GPUs (CPUs have no fast
    fp16 arithmetic; bf16 is their reduced precision), and bf16 on CUDA needs an Ampere or newer card."""
    import torch
    kind = device.strip().partition(":")[0]
    if precision == "fp16" and kind == "cpu":
        raise TicketlabError("--precision fp16 runs on GPUs only; on the CPU use --precision bf16 or fp32")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise TicketlabError(f"--precision bf16: the GPU of --device {device} has no bf16 arithmetic; "
                             "use --precision fp16 or fp32")


# ---- pruning counts --------------------------------------------------------------------------

def prunable_sizes(model) -> dict[str, int]:
    params = dict(model.named_parameters())
    return {name: params[name].numel() for name in model.prunable_names}


def density_keeps_a_weight(density: float, total: int, flag: str = "--density", model: str = "the model") -> None:
    """PaI keeps round(density * total) weights: refuse a density that keeps none."""
    if round(density * total) < 1:
        raise TicketlabError(f"{flag} {density:g} keeps 0 of the {total:,} prunable weights of {model}; "
                             f"give at least {0.5 / total:.3g}")


# ---- files and folders -----------------------------------------------------------------------

def _first_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _writable_folder(folder: Path, what: str, path: Path) -> None:
    if not folder.is_dir():
        raise TicketlabError(f"cannot create {what} {path}: {folder} is a file, not a folder; choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TicketlabError(f"cannot write {what} {path}: {folder} is not writable (permission denied); "
                             "choose another path or change its permissions")


def writable_dir(path, what: str = "folder") -> Path:
    """A folder that exists and is writable, or can be created (its first existing ancestor is a
    writable folder)."""
    if str(path).strip() == "":
        raise TicketlabError(f"the {what} path is empty; give a folder")
    path = Path(path)
    existing = _first_existing(path)
    if existing == path and not path.is_dir():
        raise TicketlabError(f"{what} {path} is a file, not a folder; give a folder")
    _writable_folder(existing, what, path)
    return path


def writable_file(path, what: str = "output file") -> Path:
    """A file that can be written: not a folder, in a folder that exists or can be created."""
    if str(path).strip() in ("", "."):
        raise TicketlabError(f"the {what} path is empty; give a file name")
    path = Path(path)
    if path.is_dir():
        raise TicketlabError(f"{what} {path} is a folder; give a file name (e.g. {path / 'out'})")
    if path.exists() and not os.access(path, os.W_OK):
        raise TicketlabError(f"cannot write {what} {path}: the file is not writable (permission denied)")
    existing = _first_existing(path.parent if str(path.parent) else Path("."))
    _writable_folder(existing, what, path)
    return path


def input_file(path, what: str = "file") -> Path:
    """An existing, readable regular file."""
    path = Path(path)
    if not path.exists():
        raise TicketlabError(f"{what} {path} does not exist")
    if path.is_dir():
        raise TicketlabError(f"{what} {path} is a folder; give a file")
    if not os.access(path, os.R_OK):
        raise TicketlabError(f"cannot read {what} {path} (permission denied)")
    return path


def read_json_file(path, what: str = "file"):
    """A JSON file's content, or a TicketlabError naming the file (missing, unreadable, not UTF-8, not JSON)."""
    path = input_file(path, what)
    return parse_json(path.read_bytes(), path, what)


def parse_json(data: bytes, path, what: str = "file"):
    """JSON bytes read from `path`; a damaged file is one line saying how to recover."""
    import json
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except ValueError as exc:
        reason = f"not valid JSON: {exc}"
    raise TicketlabError(f"{what} {path} is damaged ({reason}); restore it, or delete it and run the command again "
                         "to recompute it")


# ---- JSON output -----------------------------------------------------------------------------

def strict_json(value):
    """`value` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
