"""Fault injection: an IMP run with controls SIGKILLed again and again at random moments — in training, in
a checkpoint or mask write, between levels — finishes with exactly the results of an uninterrupted run."""

import random
import signal
import time
from pathlib import Path

import torch

from conftest import TINY_IMP, run_subprocess
from ticketlab.ticket import load_ticket

ARGS = [*TINY_IMP, "--steps", "400it", "--eval-every", "25it", "--levels", "3", "--controls", "random-reinit", "--json"]
MAX_KILLS, TIME_LIMIT = 6, 240  # bounded: the loop stops after this many kills or this many seconds


def files_of(run_dir: Path) -> dict[str, bytes]:
    """Every result file of a run (tickets, metrics, summaries), by path relative to the run."""
    keep = ("ticket.safetensors", "metrics.jsonl", "rewind.safetensors", "init.safetensors")
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.name in keep}


def test_random_sigkills_then_resume_give_the_uninterrupted_results(cli, tmp_path):
    reference = cli("imp", *ARGS, "--runs-dir", tmp_path / "ref").json()
    runs = tmp_path / "killed"
    rng = random.Random(1234)
    kills, started = 0, time.time()
    while kills < MAX_KILLS and time.time() - started < TIME_LIMIT:
        proc = run_subprocess(["imp", *ARGS, "--runs-dir", runs])
        time.sleep(rng.uniform(1.5, 5.0))  # past start-up (~1-2 s), anywhere in the run
        if proc.poll() is not None:  # it finished before the kill: the faults are over
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        # Nothing that looks finished may be partial: every ticket file present must load.
        for ticket in runs.rglob("ticket.safetensors"):
            load_ticket(ticket)
    assert kills >= 1, "no kill landed; the run is too short for this test"
    resumed = cli("imp", *ARGS, "--runs-dir", runs).json()
    ref_dir, run_dir = Path(reference["run_dir"]), Path(resumed["run_dir"])
    assert ref_dir.name == run_dir.name
    ref_files, run_files = files_of(ref_dir), files_of(run_dir)
    assert set(ref_files) == set(run_files)
    for name, content in ref_files.items():
        if name.endswith("ticket.safetensors"):  # metadata holds wall times; the tensors must be identical
            a, b = load_ticket(ref_dir / name), load_ticket(run_dir / name)
            assert a.mask.equals(b.mask), name
            for state_a, state_b in ((a.init_state, b.init_state), (a.trained_state or {}, b.trained_state or {})):
                assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a), name
        else:
            assert run_files[name] == content, name
    assert not list(runs.rglob("*.tmp")), "a temporary file was left behind"


def test_reopening_a_run_removes_only_the_temp_files_of_killed_writers(tmp_path):
    import os
    import subprocess
    import sys

    from ticketlab.config import ModelConfig
    from ticketlab.runs import open_run
    configs = {"model": ModelConfig(model="mlp_32_16")}
    run_dir = open_run(tmp_path, "train", configs)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = run_dir / "seed-0" / f".checkpoint.safetensors.{int(dead.stdout)}.abc123.tmp"
    live = run_dir / "seed-0" / f".metrics.jsonl.{os.getpid()}.def456.tmp"
    killed.parent.mkdir(parents=True)
    killed.write_bytes(b"partial")
    live.write_bytes(b"being written")
    assert open_run(tmp_path, "train", configs) == run_dir
    assert not killed.exists() and live.exists()
