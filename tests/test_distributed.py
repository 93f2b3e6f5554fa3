"""Data-parallel runs under torchrun (2 CPU processes, gloo): same tickets as one process, one writer,
clear errors, and a killed rank leaves a run that resumes to the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_IMP
from ticketlab import distributed
from ticketlab.errors import TicketlabError
from ticketlab.files import write_json
from ticketlab.ticket import load_ticket

ARGS = ["imp", *TINY_IMP, "--json"]


def torchrun(args) -> subprocess.Popen:
    """`torchrun --nproc-per-node 2 --standalone -m ticketlab ARGS` (torchrun is torch.distributed.run)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                             "-m", "ticketlab", *map(str, args)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for a launch; if it hangs, kill its whole session (launcher and workers) and fail."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("ddp") / "runs"
    proc = torchrun([*ARGS, "--runs-dir", runs])
    out, err = finish(proc, 300)
    assert proc.returncode == 0, err
    return runs, out


def files_in(runs: Path) -> list[str]:
    return sorted(str(p.relative_to(runs)) for p in runs.rglob("*") if p.is_file())


@pytest.mark.slow
def test_two_processes_train_the_tickets_of_one_process_and_only_rank_0_writes(two_process_run, cli, tmp_path):
    runs, out = two_process_run
    assert len(out.splitlines()) == 1, out  # rank 1's stdout goes nowhere: one result
    parallel = json.loads(out)
    single = cli(*ARGS, "--runs-dir", tmp_path).json()
    # The same global batch of 32, as 2 slices of 16 with gradients averaged: the gradient differs from
    # one process's only in float summation order, so the weights agree to ~1e-7 and every mask is
    # bit-identical (no weight sits that close to a pruning threshold here).
    for a, b in zip(single["levels"], parallel["levels"]):
        ta, tb = load_ticket(a["ticket"]), load_ticket(b["ticket"])
        assert ta.mask.equals(tb.mask), f"level {a['level']}"
        for name, value in ta.trained_state.items():
            torch.testing.assert_close(tb.trained_state[name], value, rtol=0, atol=1e-5)
        assert b["train_examples"] == a["train_examples"]  # counters are summed over the ranks
    # Every file once, complete: exactly the files a single process writes, and no temp files left.
    assert files_in(runs) == files_in(tmp_path)
    assert not list(runs.rglob("*.tmp"))


def test_only_rank_0_writes_and_every_rank_waits(monkeypatch, tmp_path):
    waits = []
    monkeypatch.setattr(distributed, "world", lambda: (1, 2))
    monkeypatch.setattr(distributed, "barrier", lambda: waits.append(1))
    write_json(tmp_path / "a.json", {"x": 1})
    assert not (tmp_path / "a.json").exists() and len(waits) == 2


def test_ranks_that_disagree_raise_naming_what(monkeypatch):
    def gather(out, digest):  # rank 1 reports another hash than ours
        out[0].copy_(digest)
        out[1].copy_(digest + 1)
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed.dist, "all_gather", gather)
    with pytest.raises(TicketlabError, match=r"mask level 3 differs .*ranks \[1\]"):
        distributed.all_equal_hash("mask level 3", b"bits")


def test_a_batch_is_split_into_equal_slices_in_order(monkeypatch):
    batch = torch.arange(10)
    slices = []
    for rank in range(2):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: (rank, 2))
        slices.append(distributed.shard(batch))
    assert [len(s) for s in slices] == [5, 5] and torch.equal(torch.cat(slices), batch)


@pytest.mark.slow
def test_a_batch_size_the_processes_cannot_share_is_a_one_line_error(tmp_path):
    proc = torchrun([*ARGS, "--batch-size", "33", "--runs-dir", tmp_path / "runs"])
    out, err = finish(proc, 300)
    assert proc.returncode != 0 and out == ""
    # Each rank says it (the two ranks' lines may interleave in the shared stderr pipe).
    message = ("ticketlab: error: --batch-size 33 does not split evenly over the 2 processes of this distributed run; "
               "use a multiple of 2")
    assert 1 <= err.count(message) <= 2 and "Traceback" not in err.split("ticketlab: error:")[0]
    assert not (tmp_path / "runs").exists()  # checked before anything is written


def worker_of_rank(launcher: int, rank: int) -> int:
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no worker of rank {rank} under {launcher}")


@pytest.mark.slow
def test_a_killed_rank_fails_the_job_and_a_rerun_resumes_to_the_same_result(two_process_run, tmp_path):
    reference_runs, reference_out = two_process_run
    runs = tmp_path / "runs"
    proc = torchrun([*ARGS, "--runs-dir", runs])
    deadline = time.time() + 180
    # Kill rank 1 once level 1 has a checkpoint: level 0 is finished, level 1 half done.
    while not list(runs.glob("imp-*/seed-0/level-1/checkpoint.safetensors")):
        if time.time() > deadline or proc.poll() is not None:
            finish(proc, 0)
            pytest.fail("level 1 never wrote a checkpoint")
        time.sleep(0.02)
    os.kill(worker_of_rank(proc.pid, 1), signal.SIGKILL)
    killed = time.time()
    finish(proc, 60)  # torchrun tears the group down; no rank hangs on
    assert proc.returncode != 0 and time.time() - killed < 60
    assert not list(runs.glob("imp-*/seed-0/level-2/summary.json")), "the kill did not land mid-run"
    level_0 = next(runs.glob("imp-*/seed-0/level-0/ticket.safetensors"))
    written = level_0.stat().st_mtime_ns

    rerun = torchrun([*ARGS, "--runs-dir", runs])
    out, err = finish(rerun, 300)
    assert rerun.returncode == 0, err
    assert level_0.stat().st_mtime_ns == written  # the finished level was kept, not trained again
    resumed, reference = json.loads(out), json.loads(reference_out)
    for a, b in zip(reference["levels"], resumed["levels"]):
        ta, tb = load_ticket(a["ticket"]), load_ticket(b["ticket"])
        assert ta.mask.equals(tb.mask)
        for name, value in ta.trained_state.items():
            assert torch.equal(tb.trained_state[name], value)  # resuming is bit-identical
    for path in reference_runs.rglob("metrics.jsonl"):
        assert (runs / path.relative_to(reference_runs)).read_text() == path.read_text()
