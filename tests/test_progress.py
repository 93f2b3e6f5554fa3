"""Progress lines in batch logs, log lines from parallel seeds, rank 0 only, scalars for TensorBoard and
CSV, and the optional packages' extras."""

import builtins
import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

from ticketlab import progress
from ticketlab.config import TrainConfig, validate_train
from ticketlab.errors import TicketlabError
from ticketlab.models import create_model
from ticketlab.runtime import run_seeds
from ticketlab.trainer import train

PROGRESS_LINE = re.compile(r"^(seed \d+ )?\w[\w ]*: iteration (\d+)/(\d+) \(\d+%\), loss [\d.]+, accuracy [\d.]+"
                           r"(, val accuracy [\d.]+)?, \d+m\d\ds elapsed, ETA (\d+m\d\ds|unknown)$")


@pytest.fixture
def every():
    """Progress lines as often as possible, and the default back afterwards."""
    before = progress.settings()["every"]
    progress.configure(every=0.001)
    yield
    progress.configure(every=before)


def train_tiny(tiny_data, out_dir, quiet=False, **recipe):
    model = create_model("mlp_16", tiny_data.input_shape, tiny_data.num_classes, seed=0)
    cfg = TrainConfig(**{"steps": "60it", "eval_every": "20it", "batch_size": 32, **recipe})
    return train(model, tiny_data, cfg, out_dir=out_dir, data_seed=0, quiet=quiet, label="tiny")


def test_without_a_terminal_training_prints_progress_lines(tiny_data, tmp_path, capsys, every, one_thread):
    train_tiny(tiny_data, tmp_path / "run")
    lines = capsys.readouterr().err.splitlines()
    matches = [PROGRESS_LINE.match(line) for line in lines]
    assert lines and all(matches), [line for line, m in zip(lines, matches) if not m]
    iterations = [int(m.group(2)) for m in matches]
    assert iterations == sorted(iterations) and all(int(m.group(3)) == 60 for m in matches)
    assert all(line.startswith("tiny: ") for line in lines)


def test_quiet_and_other_ranks_print_nothing(tiny_data, tmp_path, capsys, every, monkeypatch, one_thread):
    train_tiny(tiny_data, tmp_path / "quiet", quiet=True)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "1")  # a torchrun rank other than 0
    train_tiny(tiny_data, tmp_path / "rank1")
    progress.write_line("a summary line")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    progress.write_line("a summary line")
    assert capsys.readouterr().err == "a summary line\n"


def chatty_seed(seed: int, lines: int) -> int:
    """A seed job that logs long lines and reports a short training (runs in a spawned worker)."""
    reporter = progress.Reporter("work", total=lines)
    for i in range(lines):
        progress.write_line(f"seed {seed} line {i}: " + "x" * 300)
        time.sleep(0.002)  # long enough for progress lines to fall due
        reporter.advance(i + 1, lambda: (0.5, 0.75), final=i + 1 == lines)
    reporter.close()
    return seed * 10


def test_parallel_seeds_log_whole_lines_through_the_parent(capsys, every):
    results = run_seeds(chatty_seed, [0, 1, 2], 3, 40)
    assert results == {0: 0, 1: 10, 2: 20}
    lines = capsys.readouterr().err.splitlines()
    logged = [line for line in lines if " line " in line and not PROGRESS_LINE.match(line)]
    assert len(logged) == 3 * 40
    assert all(re.fullmatch(r"seed \d line \d+: x{300}", line) for line in logged), logged[:3]
    overall = [line for line in lines if line.startswith("overall: ")]
    assert [line.split(",")[0] for line in overall] == [f"overall: {n}/3 seeds finished" for n in (1, 2, 3)]
    assert "ETA" in overall[0] and "ETA" not in overall[-1]
    reported = [PROGRESS_LINE.match(line) for line in lines if "iteration" in line]
    assert reported and all(reported) and {m.group(1) for m in reported} <= {"seed 0 ", "seed 1 ", "seed 2 "}


def test_csv_log_holds_the_records_of_metrics_jsonl(tiny_data, tmp_path, one_thread):
    train_tiny(tiny_data, tmp_path / "run", quiet=True, log="csv")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "run" / "metrics.csv").read_text())))
    assert len(rows) == len(records) == 4
    for row, record in zip(rows, records):
        assert set(row) == set(record)
        for key, value in record.items():
            assert row[key] == ("" if value is None else str(value)), key


def test_tensorboard_log_writes_event_files_with_the_same_scalars(tiny_data, tmp_path, one_thread):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    train_tiny(tiny_data, tmp_path / "run", quiet=True, log="tensorboard")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    events = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert events
    reader = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tb"))
    reader.Reload()
    accuracy = reader.Scalars("test/accuracy")
    assert [e.step for e in accuracy] == [r["iteration"] for r in records]
    assert [e.value for e in accuracy] == pytest.approx([r["test_accuracy"] for r in records])
    assert len(reader.Scalars("train/loss")) == len(records) - 1  # no training loss before the first step


def test_a_missing_tensorboard_is_one_line_naming_the_extra(cli, tmp_path, monkeypatch):
    original = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else original(name, *a))
    with pytest.raises(TicketlabError, match=re.escape("pip install 'ticketlab[tensorboard]'")):
        validate_train(TrainConfig(log="tensorboard"))
    res = cli("train", "--dataset", "synthetic", "--model", "mlp_16", "--steps", "5it", "--log", "tensorboard",
              "--runs-dir", tmp_path / "runs")
    assert res.code == 2 and res.err.count("\n") == 1 and "ticketlab[tensorboard]" in res.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("module,extra,call", [
    ("sklearn", "digits", lambda tmp: __import__("ticketlab.data", fromlist=["load_dataset"]).load_dataset("digits", tmp)),
    ("yaml", "yaml", lambda tmp: __import__("ticketlab.sweeps", fromlist=["read_grid"]).read_grid(_grid(tmp))),
])
def test_missing_optional_packages_name_their_extra(tmp_path, monkeypatch, module, extra, call):
    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", without)
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(TicketlabError, match=re.escape(f"pip install 'ticketlab[{extra}]'")):
        call(tmp_path)


def _grid(folder: Path) -> Path:
    path = folder / "grid.yaml"
    path.write_text("command: train\ngrid:\n  lr: [0.1, 0.2]\n")
    return path


def test_extras_all_and_test_cover_every_optional_package():
    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"digits", "tensorboard", "all"} <= set(extras)
    named = set(re.fullmatch(r"ticketlab\[(.*)\]", extras["all"][0]).group(1).split(","))
    assert named == set(extras) - {"all", "test"}
    assert "ticketlab[all]" in extras["test"]


def test_train_log_tensorboard_writes_event_files_in_the_run(cli, tmp_path, one_thread):
    pytest.importorskip("tensorboard")
    res = cli("train", "--dataset", "synthetic", "--train-subset", "300", "--model", "mlp_16", "--steps", "20it",
              "--eval-every", "10it", "--log", "tensorboard", "--runs-dir", tmp_path / "runs", "--json")
    assert res.code == 0, res.err
    run_dir = Path(res.json()["run_dir"])
    assert list((run_dir / "tb").glob("events.out.tfevents.*")) and not (run_dir / "metrics.csv").exists()


@pytest.mark.slow
def test_under_torchrun_every_line_is_printed_once(tmp_path):
    """Two ranks run the same command; only rank 0 prints its log and progress lines."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = ["train", "--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_16", "--steps", "300it",
            "--eval-every", "100it", "--batch-size", "32", "--progress-every", "0.2", "--runs-dir", tmp_path / "runs"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                           "-m", "ticketlab", *map(str, args)], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith(("recipe:", "train:"))]
    assert sum(line.startswith("recipe:") for line in lines) == 1, lines
    progress_lines = [line for line in lines if line.startswith("train:")]
    assert progress_lines and all(PROGRESS_LINE.match(line) for line in progress_lines)
    assert len(set(progress_lines)) == len(progress_lines)  # no line twice, as two ranks would print it


def test_a_bad_progress_interval_is_refused_in_one_line(cli, tmp_path):
    for bad in ("0", "-5", "nan"):
        res = cli("train", "--progress-every", bad, "--runs-dir", tmp_path / "runs")
        assert res.code == 2 and res.err.count("\n") == 1 and "--progress-every" in res.err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(TicketlabError, match="--progress-every"):
        progress.configure(every=0)
