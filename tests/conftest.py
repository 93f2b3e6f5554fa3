"""Shared fixtures: tiny synthetic data and a way to run the CLI in-process or as a subprocess."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from ticketlab.cli import main
from ticketlab.data import load_dataset

REPO = Path(__file__).resolve().parents[1]
# Prepared datasets are cached in a folder of this test session (subprocesses inherit it), not the user's.
os.environ["TICKETLAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="ticketlab-test-cache-")


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one intra-op thread, and do not stall spin-waiting on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data():
    return load_dataset("synthetic", train_subset=600)


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(capsys):
    """Run `ticketlab ARGS` in this process; returns exit code, stdout and stderr."""
    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse exits for usage errors and --help
            code = exc.code
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)
    return run


def run_subprocess(args, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ticketlab", *map(str, args)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# Options for a fast IMP on the synthetic set (a few seconds per level).
TINY_IMP = ["--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32_16", "--steps", "60it",
            "--batch-size", "32", "--eval-every", "20it", "--levels", "2", "--quiet"]
