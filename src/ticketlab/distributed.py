"""Data-parallel runs under torchrun: the process group and the few collectives ticketlab needs.

    torchrun --nproc-per-node 2 -m ticketlab imp ...      (also train, train-ticket, prune, pai, demo)

trains each network with DistributedDataParallel over the global --batch-size (a multiple of the
number of processes). Only rank 0 prints the result and writes files; add torchrun's
--local-ranks-filter 0 to see one copy of the logs too. If a rank dies, torchrun stops the others
and the command fails; run it again to resume from the last checkpoints.

Outside torchrun (WORLD_SIZE unset or 1) nothing is initialized and every function here answers
"rank 0 of 1" or does nothing, so single-process runs compute exactly what they did before.

The contract of a distributed run: every rank runs the same command on the same inputs and the same
files, so all ranks take the same branches and call the collectives (and `files.write_bytes`) in the
same order. Run directories and data must be on a filesystem every rank sees (one node, or a shared
filesystem across nodes). Library code launched under torchrun must call `init_from_env` itself.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
from torch import nn

from ticketlab.errors import TicketlabError


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env() -> None:
    """Join the process group torchrun describes in the environment; idempotent, a no-op outside torchrun.

    CPU tensors go over gloo and CUDA tensors over nccl (one group serving both), so the backend
    follows the device each collective's tensors live on rather than a guess made before the config
    is read. Multi-node runs rendezvous through the MASTER_ADDR/MASTER_PORT torchrun sets.
    """
    if active() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if not dist.is_available():
        raise TicketlabError("this torch build has no torch.distributed; run without torchrun")
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend, init_method="env://")


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if not active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    return world()[0] == 0


def barrier() -> None:
    # A one-element CPU all-reduce, not dist.barrier(): it always goes over gloo, whatever devices
    # the group also serves, and needs no device guess.
    if active():
        dist.all_reduce(torch.zeros(1))


def local_device(device: torch.device) -> torch.device:
    """Under torchrun a bare "cuda" means this process's own GPU (LOCAL_RANK), not GPU 0 for everyone."""
    if active() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def check_batch_size(batch_size: int | None) -> None:
    _, size = world()
    if batch_size is not None and size > 1 and batch_size % size:
        raise TicketlabError(f"--batch-size {batch_size} does not split evenly over the {size} processes of this "
                             f"distributed run; use a multiple of {size}")


def shard(items):
    """This rank's slice of a global batch (a tensor or anything sliceable along its first axis).

    Slices are equal when the batch splits evenly and differ by at most one item otherwise (an
    epoch's last, partial batch); together they cover the batch in order.
    """
    rank, size = world()
    if size == 1:
        return items
    n = len(items)
    return items[rank * n // size:(rank + 1) * n // size]


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sums over ranks, in float64 (exact for counts below 2**53)."""
    if not active():
        return list(values)
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """Names and raw bytes of tensors, in order: what two ranks must agree on bit for bit."""
    parts = []
    for name, t in tensors.items():
        parts.append(name.encode() + b"\0")
        parts.append(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return b"".join(parts)


def all_equal_hash(tag: str, data: bytes) -> None:
    """Raise on every rank if any rank's `data` differs (compared by SHA-256); a no-op when not distributed."""
    if not active():
        return
    digest = torch.frombuffer(bytearray(hashlib.sha256(data).digest()), dtype=torch.uint8).to(torch.int64)
    gathered = [torch.empty_like(digest) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, digest)
    differing = [rank for rank, other in enumerate(gathered) if not torch.equal(other, gathered[0])]
    if differing:
        raise TicketlabError(f"{tag} differs between the processes of this distributed run (ranks {differing} disagree "
                             "with rank 0); every rank must run the same ticketlab on the same data and files")


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` wrapped in DistributedDataParallel: gradients are averaged over ranks during backward.

    Construction copies rank 0's parameters and buffers to every rank. Buffers are then not
    broadcast at every forward: the trainer calls `sync_buffers` after each step instead, so
    evaluations and checkpoints see the same buffers (rank 0's) on every rank.
    """
    from torch.nn.parallel import DistributedDataParallel
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


@torch.no_grad()
def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    buffers = list(model.buffers())
    if not active() or not buffers:
        return
    # One broadcast per dtype rather than one per BatchNorm tensor, in first-seen order (the same on
    # every rank; a set's order would not be).
    for dtype in dict.fromkeys(b.dtype for b in buffers):
        group = [b for b in buffers if b.dtype == dtype]
        flat = torch.cat([b.reshape(-1) for b in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for b in group:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()
