"""`ticketlab profile`: what a ticket costs against its dense original — size, FLOPs and speed.

Variants timed on the same random batches, in this process, one after another:
  dense        the original architecture, every weight live (what the ticket came from)
  masked       the ticket as trained: pruned weights are zeros inside dense kernels
  shrunk       dead neurons and channels removed physically, dense kernels
  sparse       the shrunk network with each Linear on CSR where measured faster (see sparse.py)
Latency is the median of repeated calls after warm-up; throughput is batch size / latency.
File sizes are those of each export format written to a temporary folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ticketlab import checks
from ticketlab.deploy.export import FORMATS, export_ticket, shrunk_model, ticket_model, training_normalization
from ticketlab.deploy.flops import count
from ticketlab.deploy.sparse import median_seconds, sparsify
from ticketlab.errors import TicketlabError
from ticketlab.files import write_safetensors
from ticketlab.models import model_from_architecture
from ticketlab.ticket import load_ticket

BATCH_SIZES = (1, 64, 256)
MAX_REPEATS = 100_000  # timed calls per measurement
MAX_BATCH = 65_536  # examples per timed batch (one batch is allocated in memory)


def check_profile_request(batch_sizes, repeats: int) -> tuple[int, ...]:
    """Distinct batch sizes from 1 to MAX_BATCH and 1 to MAX_REPEATS timed calls, checked before any work."""
    sizes = tuple(batch_sizes) if isinstance(batch_sizes, (list, tuple)) else (batch_sizes,)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BATCH for b in sizes) \
            or len(set(sizes)) != len(sizes):
        raise TicketlabError(f"batch sizes must be distinct whole numbers from 1 to {MAX_BATCH:,}, such as "
                             f"(1, 64, 256); got {batch_sizes!r}")
    checks.integer("repeats", repeats, 1, MAX_REPEATS)
    return sizes


def file_sizes(ticket_path: Path) -> dict[str, int | str]:
    """Bytes of the ticket file, the dense original's state_dict and every export format."""
    ticket = load_ticket(ticket_path)
    sizes: dict[str, int | str] = {"ticket file": ticket_path.stat().st_size}
    try:  # read once for every format; where the data is not at hand, sizes do not depend on the values
        normalization = training_normalization(ticket)
    except TicketlabError:
        shape = ticket.architecture["input_shape"]
        broadcast = (1, shape[0]) + (1,) * (len(shape) - 1)
        normalization = (torch.zeros(broadcast), torch.ones(broadcast))
    with tempfile.TemporaryDirectory() as tmp:
        dense = model_from_architecture(ticket.architecture)
        write_safetensors(Path(tmp) / "dense-original.safetensors", dense.state_dict())
        sizes["dense original (safetensors)"] = (Path(tmp) / "dense-original.safetensors").stat().st_size
        for fmt in FORMATS:
            for half in ((False, True) if fmt == "compact" else (False,)):
                label = fmt + (" fp16" if half else "")
                try:
                    sizes[label] = export_ticket(ticket_path, fmt, Path(tmp) / f"export-{fmt}-{half}", half=half,
                                                 normalization=normalization)["bytes"]
                except TicketlabError as exc:  # e.g. ONNX without its optional packages
                    sizes[label] = f"unavailable: {exc}"
    return sizes


@torch.no_grad()
def time_variants(variants: dict, input_shape, batch_sizes, repeats: int) -> dict[str, dict[int, dict]]:
    timings: dict[str, dict[int, dict]] = {name: {} for name in variants}
    for batch in batch_sizes:
        x = torch.randn(batch, *input_shape)
        for name, build in variants.items():
            model = build(batch)
            seconds = median_seconds(lambda: model(x), repeats)
            timings[name][batch] = {"latency_ms": 1e3 * seconds, "throughput_per_s": batch / seconds}
    return timings


def profile_ticket(ticket_path: str | Path, batch_sizes=BATCH_SIZES, repeats: int = 30) -> dict:
    ticket_path = Path(ticket_path)
    ticket = load_ticket(ticket_path)
    input_shape = tuple(ticket.architecture["input_shape"])
    masked = ticket_model(ticket)
    dense = model_from_architecture(ticket.architecture).eval()
    small = shrunk_model(masked, ticket.mask)
    decisions = {}

    def sparse_for(batch):
        model, decisions[batch] = sparsify(small, batch_size=batch)
        return model

    variants = {"dense": lambda b: dense, "masked": lambda b: masked, "shrunk": lambda b: small, "sparse": sparse_for}
    timings = time_variants(variants, input_shape, batch_sizes, repeats)
    counts = {"dense": count(dense, input_shape), "masked": count(masked, input_shape, ticket.mask),
              "shrunk": count(small, input_shape)}
    counts["sparse"] = counts["shrunk"]
    return {"ticket": str(ticket_path), "architecture": ticket.architecture["name"], "density": ticket.mask.density(),
            "counts": {k: {key: v[key] for key in ("parameters", "nonzero_parameters", "flops")} for k, v in counts.items()},
            "timings": {k: {str(b): t for b, t in v.items()} for k, v in timings.items()},
            "sparse_paths": {str(b): d for b, d in decisions.items()}, "file_sizes": file_sizes(ticket_path),
            "threads": torch.get_num_threads()}


def profile_table(result: dict) -> str:
    lines = [f"ticket {result['ticket']} ({result['architecture']}, density {result['density']:.4f}, "
             f"{result['threads']} threads)", "",
             f"{'variant':8s} {'parameters':>11s} {'non-zeros':>11s} {'FLOPs/example':>14s}  " +
             "  ".join(f"{'b=' + b + ' ms':>10s} {'ex/s':>9s}" for b in next(iter(result["timings"].values())))]
    for name, timing in result["timings"].items():
        c = result["counts"][name]
        lines.append(f"{name:8s} {c['parameters']:>11,d} {c['nonzero_parameters']:>11,d} {c['flops']:>14,d}  " +
                     "  ".join(f"{t['latency_ms']:>10.3f} {t['throughput_per_s']:>9,.0f}" for t in timing.values()))
    lines += ["", "sparse paths chosen (measured per layer): " + "; ".join(
        f"batch {b}: " + ", ".join(f"{n} {d['path']} (density {d['density']:.3f})" for n, d in layers.items())
        for b, layers in result["sparse_paths"].items())]
    lines += ["", "file sizes:"] + [f"  {k:30s} {v:>12,d} bytes" if isinstance(v, int) else f"  {k:30s} {v}"
                                    for k, v in result["file_sizes"].items()]
    return "\n".join(lines)
