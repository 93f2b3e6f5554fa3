"""Seed workers: killing the command leaves no worker computing on."""

import os
import signal
import subprocess
import sys
import time

import pytest

SCRIPT = """
import os, sys, time
from ticketlab.runtime import run_seeds

def work(seed, folder):
    open(os.path.join(folder, f"worker-{seed}.pid"), "w").write(str(os.getpid()))
    time.sleep(120)
    return {}

if __name__ == "__main__":
    run_seeds(work, [0, 1], 2, sys.argv[1])
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_killing_the_parent_stops_its_seed_workers(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    pid_files = [tmp_path / f"worker-{s}.pid" for s in (0, 1)]
    deadline = time.time() + 120
    while not all(p.exists() and p.read_text() for p in pid_files):
        assert time.time() < deadline and parent.poll() is None, "the workers did not start"
        time.sleep(0.1)
    workers = [int(p.read_text()) for p in pid_files]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)
