"""Trust in every run: the learning rate is a pure function of the iteration in every loop, a run
directory is locked while a process works in it, ticket files show any edit, and identical runs give
byte-identical tickets."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

from conftest import REPO, run_subprocess
from ticketlab.config import TrainConfig
from ticketlab.data import load_dataset
from ticketlab.models import create_model
from ticketlab.supertickets.config import SuperConfig
from ticketlab.supertickets.search import two_in_one
from ticketlab.trainer import CHECKPOINT, Schedule, train


class StepLrs:
    """Every optimizer step's learning rate, from a global pre-step hook: what the loop really used."""

    def __init__(self):
        self.lrs: list[float] = []

    def __enter__(self):
        self.handle = register_optimizer_step_pre_hook(
            lambda optimizer, args, kwargs: self.lrs.append(optimizer.param_groups[0]["lr"]))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_the_learning_rate_is_a_function_of_the_iteration_alone():
    cfg = TrainConfig(lr=0.1, gamma=0.5, batch_size=10, steps="10it", milestones="3it,6it", warmup="2it")
    schedule = Schedule.of(cfg, 100)
    expected = [0.05, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025]
    assert [schedule.learning_rate(i) for i in range(10)] == pytest.approx(expected)
    assert schedule.final_lr() == pytest.approx(0.025)


@pytest.mark.parametrize("start", [0, 2, 3, 4, 6])
def test_every_step_of_the_trainer_uses_the_schedules_lr_wherever_training_starts(tmp_path, tiny_data, start):
    # Starting exactly at a milestone (3 and 6) once decayed the lr twice.
    cfg = TrainConfig(lr=0.1, gamma=0.1, batch_size=50, steps="9it", milestones="3it,6it", warmup="2it",
                      eval_every="1it")
    schedule = Schedule.of(cfg, len(tiny_data.train_y))
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=0)
    with StepLrs() as seen:
        train(model, tiny_data, cfg, out_dir=tmp_path, data_seed=0, start_iteration=start, quiet=True)
    assert seen.lrs == pytest.approx([schedule.learning_rate(i) for i in range(start, 9)], rel=1e-12)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["lr"] == pytest.approx(schedule.learning_rate(start))
    assert [r["lr"] for r in records[1:]] == pytest.approx(seen.lrs)


def test_the_two_in_one_loop_uses_the_schedules_lr_at_every_iteration(one_thread):
    data = load_dataset("synthetic-images", train_subset=100)
    model = create_model("supernet_w4_c2_e2", data.input_shape, data.num_classes, seed=0)
    cfg = TrainConfig(lr=0.05, momentum=0.9, batch_size=50, steps="6it", milestones="2it,4it", gamma=0.5)
    scfg = SuperConfig(density=0.5, prune_interval="2it", shrink_interval="3it", rho=0.5, rho_warmup="1it")
    with StepLrs() as seen:
        two_in_one(model, data, cfg, scfg, data_seed=1)
    schedule = Schedule.of(cfg, len(data.train_y))
    assert seen.lrs == pytest.approx([schedule.learning_rate(i) for i in range(6)], rel=1e-12)


def test_a_run_stopped_right_after_a_milestone_resumes_identically(tmp_path, tiny_data):
    # 12 iterations per epoch; the milestone is epoch-aligned, so the checkpoint the resume starts from is
    # written exactly at it.
    cfg = TrainConfig(lr=0.1, momentum=0.9, gamma=0.1, batch_size=50, steps="3ep", milestones="1ep",
                      eval_every="5it")
    full = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=4)
    train(full, tiny_data, cfg, out_dir=tmp_path / "full", data_seed=4, quiet=True)

    class Stop(Exception):
        pass

    def stop_after_the_milestone(iteration, x, y):
        if iteration == 14:  # two steps into the epoch after the milestone's checkpoint
            raise Stop
        return x, y

    stopped = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=4)
    with pytest.raises(Stop):
        train(stopped, tiny_data, cfg, out_dir=tmp_path / "resumed", data_seed=4, quiet=True,
              batch_hook=stop_after_the_milestone)
    resumed = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=99)
    with StepLrs() as seen:
        train(resumed, tiny_data, cfg, out_dir=tmp_path / "resumed", data_seed=4, quiet=True)
    assert seen.lrs == pytest.approx([0.01] * 24)
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert (tmp_path / "full" / "metrics.jsonl").read_bytes() == (tmp_path / "resumed" / "metrics.jsonl").read_bytes()
    a, b = load_file(str(tmp_path / "full" / CHECKPOINT)), load_file(str(tmp_path / "resumed" / CHECKPOINT))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rewinding_to_a_milestone_trains_at_the_decayed_lr_once(cli, tmp_path):
    res = cli("imp", "--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32", "--lr", "0.1",
              "--gamma", "0.1", "--milestones", "3it", "--steps", "6it", "--eval-every", "1it", "--rewind-step", "3it",
              "--levels", "1", "--quiet", "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    level = Path(res.json()["run_dir"]) / "seed-0" / "level-1"
    records = [json.loads(line) for line in (level / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [3, 4, 5, 6]
    assert [r["lr"] for r in records] == pytest.approx([0.01] * 4)


# ---- one process per run ------------------------------------------------------------------------

# Long enough that a second process, started after it, finds it still running (its start-up is seconds).
LONG_IMP = ["imp", "--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32_16", "--steps", "1200it",
            "--batch-size", "32", "--eval-every", "200it", "--levels", "3", "--quiet", "--json"]


def start_and_wait_for_the_lock(args, runs: Path):
    proc = run_subprocess([*args, "--runs-dir", runs])
    deadline = time.time() + 60
    while not list(runs.glob("*/config.json")):  # written after the lock is taken
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run never started"
        time.sleep(0.05)
    return proc


def ticket_bytes(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*.safetensors"))
            if p.name == "ticket.safetensors"}


@pytest.mark.slow
def test_a_second_process_on_a_running_run_stops_with_one_line_naming_the_holder(cli, tmp_path):
    runs = tmp_path / "shared"
    first = start_and_wait_for_the_lock(LONG_IMP, runs)
    second = subprocess.run([sys.executable, "-m", "ticketlab", *LONG_IMP, "--runs-dir", str(runs)], cwd=REPO,
                            capture_output=True, text=True)
    assert first.poll() is None, "the first run ended before the second started; make it longer"
    assert second.returncode == 2 and second.stdout == ""
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"process {first.pid}" in lines[0] and "in use" in lines[0], second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    solo = cli(*LONG_IMP, "--runs-dir", tmp_path / "solo")
    assert solo.code == 0
    shared_dir, solo_dir = Path(json.loads(out)["run_dir"]), Path(solo.json()["run_dir"])
    assert ticket_bytes(shared_dir) == ticket_bytes(solo_dir) and len(ticket_bytes(solo_dir)) == 4


@pytest.mark.slow
def test_a_killed_holder_never_blocks_the_resume(cli, tmp_path):
    runs = tmp_path / "runs"
    holder = start_and_wait_for_the_lock(LONG_IMP, runs)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    resumed = cli(*LONG_IMP, "--runs-dir", runs)
    assert resumed.code == 0, resumed.err
    assert ticket_bytes(Path(resumed.json()["run_dir"]))


def test_seed_workers_run_inside_their_parents_lock(cli, tmp_path):
    res = cli("imp", *LONG_IMP[1:], "--steps", "40it", "--levels", "1", "--seeds", "0,1", "--workers", "2",
              "--runs-dir", tmp_path)
    assert res.code == 0, res.err
    assert len(res.json()["levels"][1]["tickets"]) == 2


# ---- tickets show any edit ----------------------------------------------------------------------

TINY_PRUNE = ["--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32_16", "--steps", "60it",
              "--batch-size", "32", "--eval-every", "20it", "--quiet", "--json"]


@pytest.fixture(scope="module")
def trained_ticket(tmp_path_factory):
    from ticketlab.cli import main
    runs = tmp_path_factory.mktemp("runs")
    assert main(["prune", *TINY_PRUNE, "--method", "snip", "--density", "0.3", "--runs-dir", str(runs)]) == 0
    ticket = next(runs.glob("prune-*/seed-0/ticket.safetensors"))
    assert main(["train-ticket", str(ticket), "--runs-dir", str(runs), "--quiet"]) == 0
    return next(runs.glob("train-ticket-*/ticket.safetensors"))


def edited(tmp_path, path: Path, old: bytes, new: bytes) -> Path:
    """The file with `old` replaced by `new` (same length) in its metadata, a JSON string inside the header."""
    old, new = old.replace(b'"', b'\\"'), new.replace(b'"', b'\\"')
    data = path.read_bytes()
    assert data.count(old) >= 1, old
    out = tmp_path / "edited.safetensors"
    out.write_bytes(data.replace(old, new, 1))
    return out


@pytest.mark.parametrize("old, new", [
    (b'"lr": 0.1,', b'"lr": 9.1,'),                  # the recipe: train-ticket would train at lr 9.1
    (b'"test_accuracy": 0.', b'"test_accuracy": 1.'),  # a result shown by show
    (b'"method": "snip"', b'"methxd": "snip"'),      # a renamed key (was a traceback)
    (b'"seed": 0', b'"seed": 7'),
])
def test_an_edited_ticket_header_is_refused_by_every_reader(cli, tmp_path, trained_ticket, old, new):
    bad = edited(tmp_path, trained_ticket, old, new)
    assert len(bad.read_bytes()) == len(trained_ticket.read_bytes())
    for args in (["show", bad], ["train-ticket", bad, "--runs-dir", tmp_path / "runs"], ["export", bad, "--format",
                 "compact", "--out", tmp_path / "out.safetensors"], ["profile", bad, "--repeats", "1"]):
        res = cli(*args)
        assert res.code == 2 and len(res.err.strip().splitlines()) == 1, (args, res.err)
        assert "checksum" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out.safetensors").exists()


def test_edited_tensor_bytes_are_refused(cli, tmp_path, trained_ticket):
    data = bytearray(trained_ticket.read_bytes())
    data[-3] ^= 0x10
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    res = cli("show", bad)
    assert res.code == 2 and "checksum" in res.err


def rewrite(path: Path, out: Path, change) -> Path:
    """A crafted ticket: metadata changed by `change`, with a valid checksum recomputed (checksums are not
    secrets), so only the metadata checks stand between it and a reader."""
    from safetensors.torch import load as load_bytes
    from ticketlab.files import checked_metadata, write_checked_safetensors
    data = path.read_bytes()
    meta = checked_metadata(data, "ticketlab")
    change(meta)
    write_checked_safetensors(out, load_bytes(data), "ticketlab", meta)
    return out


@pytest.mark.parametrize("change", [
    lambda m: m.pop("mask_shapes"),
    lambda m: m.update(architecture="lenet"),
    lambda m: m["architecture"].update(input_shape=[1, -2]),
    lambda m: m["architecture"].update(num_classes="ten"),
    lambda m: m.update(mask_shapes={"fc1.weight": "32x20"}),
    lambda m: m.update(metrics={"test_accuracy": "99%"}),
    lambda m: m.update(seed="zero"),
    lambda m: m.update(rewind_step=None),
    lambda m: m["train_config"].update(learning_rate=0.1),
    lambda m: m["train_config"].update(lr=float("nan")),
    lambda m: m.update(data_config=[1, 2]),
    lambda m: m.update(format_version=1),
], ids=["no-mask-shapes", "arch-string", "negative-shape", "classes-string", "shape-string", "metric-string",
        "seed-string", "rewind-null", "unknown-recipe-key", "nan-lr", "data-config-list", "old-version"])
def test_crafted_metadata_with_a_valid_checksum_gets_one_line(cli, tmp_path, trained_ticket, change):
    bad = rewrite(trained_ticket, tmp_path / "crafted.safetensors", change)
    for args in (["show", bad, "--json"], ["train-ticket", bad, "--runs-dir", tmp_path / "runs"]):
        res = cli(*args)
        assert res.code == 2 and len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err, (args, res.err)
        assert res.out == ""
    assert not (tmp_path / "runs").exists()


def test_a_recomputed_checksum_of_unchanged_metadata_still_loads(cli, tmp_path, trained_ticket):
    # The crafting helper above is itself sound: with no change the file is accepted.
    same = rewrite(trained_ticket, tmp_path / "same.safetensors", lambda m: None)
    assert same.read_bytes() == trained_ticket.read_bytes()
    assert cli("show", same).code == 0


# ---- identical runs, identical bytes -------------------------------------------------------------

def test_identical_runs_give_byte_identical_ticket_files(cli, tmp_path):
    made = []
    for name in ("a", "b"):
        runs = tmp_path / name
        prune = cli("prune", *TINY_PRUNE, "--method", "synflow", "--density", "0.2", "--rewind-step", "20it",
                    "--runs-dir", runs)
        assert prune.code == 0, prune.err
        trained = cli("train-ticket", prune.json()["ticket"], "--runs-dir", runs, "--json")
        assert trained.code == 0, trained.err
        made.append([Path(prune.json()["ticket"]), Path(trained.json()["ticket"])])
    for a, b in zip(*made):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert (a.parent / "ticket.timings.json").exists()  # the measurements are kept, beside the ticket


# ---- damaged run files ----------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["config", "result", "checkpoint", "rewind", "metrics-timings"])
def test_damaged_run_files_give_one_line_saying_how_to_recover(cli, tmp_path, damage):
    args = ["imp", *TINY_PRUNE, "--levels", "1", "--runs-dir", tmp_path]
    first = cli(*args)
    assert first.code == 0, first.err
    run_dir = Path(first.json()["run_dir"])
    if damage == "config":
        (run_dir / "config.json").write_text("{not json")
    elif damage == "result":
        (run_dir / "seed-0" / "result.json").write_text('{"seed": 0, "lev')
    elif damage == "checkpoint":
        (run_dir / "seed-0" / "result.json").unlink()
        checkpoint = run_dir / "seed-0" / "level-1" / CHECKPOINT
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
        (run_dir / "seed-0" / "level-1" / "summary.json").unlink()
        (run_dir / "seed-0" / "level-1" / "ticket.safetensors").unlink()
    elif damage == "rewind":
        (run_dir / "seed-0" / "result.json").unlink()
        for name in ("summary.json", "ticket.safetensors", CHECKPOINT):
            (run_dir / "seed-0" / "level-1" / name).unlink()
        rewind = run_dir / "seed-0" / "level-0" / "rewind.safetensors"
        rewind.write_bytes(b"\x00" * 20)
    else:
        timings = next(run_dir.rglob("ticket.timings.json"))
        timings.write_text("garbage")  # measurements only: the ticket itself still loads
        assert cli("show", timings.with_name("ticket.safetensors")).code == 0
        return
    res = cli(*args)
    assert res.code == 2 and "Traceback" not in res.err, res.err
    error = [line for line in res.err.splitlines() if "error" in line]  # progress lines of resumed levels aside
    assert len(error) == 1 and "damaged" in error[0] and ("delete" in error[0] or "restore" in error[0]), res.err


def test_a_valid_ticket_at_a_non_utf8_path_loads(cli, tmp_path, trained_ticket):
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))  # Latin-1 bytes: not valid UTF-8
    folder.mkdir()
    copy = folder / "ticket.safetensors"
    copy.write_bytes(trained_ticket.read_bytes())
    res = cli("show", copy, "--json")
    assert res.code == 0, res.err
    assert res.json()["method"] == "snip"


def test_the_format_pages_checksum_recipe_verifies_a_ticket_without_ticketlab(tmp_path, trained_ticket):
    import re
    page = (REPO / "docs" / "format.md").read_text()
    namespace = {}
    exec(re.findall(r"```python\n(.*?)```", page, re.S)[0], namespace)
    computed, stored = namespace["ticket_checksum"](trained_ticket)
    assert computed == stored
    edited_copy = edited(tmp_path, trained_ticket, b'"seed": 0', b'"seed": 5')
    computed, stored = namespace["ticket_checksum"](edited_copy)
    assert computed != stored
