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
