"""BatchNorm re-estimation (batchnorm.py) and its use at every point of the instability analysis."""

from pathlib import Path

import pytest
import torch
from torch import nn

from ticketlab.batchnorm import recalibrate_batchnorm
from ticketlab.data import epoch_permutation, load_dataset
from ticketlab.lth.stability import run_stability

TINY = ["--dataset", "synthetic-images", "--train-subset", "200", "--model", "resnet_blocks_1_1_1_w4",
        "--steps", "8it", "--batch-size", "32", "--eval-every", "8it", "--quiet"]


def test_running_statistics_become_the_exact_average_of_the_calibration_batches():
    data = load_dataset("synthetic", train_subset=300)
    model = nn.Sequential(nn.Linear(data.train_x.shape[1], 6), nn.BatchNorm1d(6))
    with torch.no_grad():
        model[1].running_mean.fill_(5.0)
    model.eval()
    recalibrate_batchnorm(model, data, batches=3, batch_size=40, seed=7)
    order = epoch_permutation(len(data.train_y), 7, 0)
    with torch.no_grad():
        features = [model[0](data.train_x[order[b * 40:(b + 1) * 40]]) for b in range(3)]
    expected_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    expected_var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)
    assert torch.allclose(model[1].running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(model[1].running_var, expected_var, atol=1e-6)
    assert not model.training and model[1].momentum == 0.1  # mode and momentum restored


def test_stability_reestimates_batchnorm_at_every_point(cli, tmp_path):
    trained = cli("train", *TINY, "--runs-dir", tmp_path, "--json")
    assert trained.code == 0, trained.err
    ticket = trained.json()["ticket"]
    same = run_stability(ticket, None, str(tmp_path), seed=0, points=3, data_root=None, quiet=True,
                         same_data_order=True, bn_reestimate=2)
    assert same["barrier"] == pytest.approx(0.0, abs=1e-12) and same["bn_reestimate"] == 2 and same["batchnorm"]
    plain = cli("stability", ticket, "--points", "3", "--runs-dir", tmp_path, "--json")
    fresh = cli("stability", ticket, "--points", "3", "--bn-reestimate", "2", "--runs-dir", tmp_path, "--json")
    assert plain.code == 0 and fresh.code == 0, plain.err + fresh.err
    assert plain.json()["run_dir"] != fresh.json()["run_dir"] and plain.json()["bn_reestimate"] == 0
    # The copies' final weights are the same in both runs; only the statistics at each point differ.
    assert plain.json()["test_errors"] != fresh.json()["test_errors"]
    bad = cli("stability", ticket, "--bn-reestimate", "-1", "--runs-dir", tmp_path / "bad")
    assert bad.code == 2 and "--bn-reestimate" in bad.err and not (tmp_path / "bad").exists()
    assert Path(fresh.json()["plot"]).exists()
