"""Sweeps: a grid of tiny runs on the local engine and on Ray, skipped when finished, and bad grids."""

import importlib.util
import json

import pytest

from ticketlab.cli import build_parser
from ticketlab.commands.build import build
from ticketlab.commands.registry import command
from ticketlab.config import to_dict
from ticketlab.sweeps import point

GRID = """
command = "pai"
[fixed]
dataset = "synthetic"
train_subset = 600
model = "mlp_32_16"
steps = "40it"
batch_size = 32
eval_every = "20it"
[grid]
methods = ["snip", "random"]
densities = [0.2, 0.05]
seeds = [0]
"""


def write(tmp_path, text, name="grid.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_local_sweep_runs_every_point_once_and_reports(cli, tmp_path, one_thread):
    grid = write(tmp_path, GRID)
    res = cli("sweep", grid, "--workers", "2", "--runs-dir", tmp_path / "runs", "--json")
    assert res.code == 0, res.err
    summary = res.json()
    assert summary["runs"] == summary["done"] == 4 and summary["failed"] == 0
    assert {(r["methods"], r["densities"]) for r in summary["rows"]} == {("snip", 0.2), ("snip", 0.05),
                                                                       ("random", 0.2), ("random", 0.05)}
    assert "4 done, 0 running, 0 failed of 4" in res.err
    # The same run through the CLI directly returns the stored result: the sweep ran the real command.
    direct = cli("pai", "--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32_16", "--steps", "40it",
                 "--batch-size", "32", "--eval-every", "20it", "--methods", "snip", "--densities", "0.2", "--seeds", "0",
                 "--runs-dir", tmp_path / "runs", "--json", "--quiet").json()
    row = next(r for r in summary["rows"] if r["methods"] == "snip" and r["densities"] == 0.2)
    assert row["test_accuracy"] == direct["results"][0]["test_accuracy"]
    report = (tmp_path / "runs" / summary["sweep_dir"].split("/")[-1] / "report.md").read_text()
    assert "| snip | 0.05 |" in report and any((tmp_path / "runs").glob("sweep-*/accuracy.png"))
    again = cli("sweep", grid, "--runs-dir", tmp_path / "runs", "--json")
    assert again.code == 0 and "sweep:" not in again.err  # nothing left to run: no worker started
    assert [r["test_accuracy"] for r in again.json()["rows"]] == [r["test_accuracy"] for r in summary["rows"]]


def test_a_failing_run_is_reported_and_the_others_finish(cli, tmp_path, one_thread):
    grid = write(tmp_path, GRID.replace("densities = [0.2, 0.05]", "densities = [0.2, 2.0]")
                 .replace('methods = ["snip", "random"]', 'methods = ["random"]'))
    res = cli("sweep", grid, "--workers", "1", "--runs-dir", tmp_path / "runs", "--json")
    assert res.code == 1
    rows = res.json()["rows"]
    assert [r["ok"] for r in rows] == [True, False] and "must be in (0, 1]" in rows[1]["error"]


def test_grid_values_are_read_as_the_command_line_reads_them(tmp_path):
    """A grid point and the same options on the command line build the same configs, so they name the same runs."""
    pai = command("pai")
    configs, options = build(pai, point(pai, {"lr": 1, "seeds": [0, 1], "densities": [0.1, 0.05], "train-subset": 600,
                                              "search_batch_size": 16}, str(tmp_path)))
    assert isinstance(configs["train"].lr, float) and (options.seeds, options.densities) == ("0,1", "0.1,0.05")
    assert options.json and options.quiet and options.runs_dir == str(tmp_path)
    given = vars(build_parser().parse_args(["pai", "--lr", "1", "--seeds", "0,1", "--densities", "0.1,0.05",
                                            "--train-subset", "600", "--cts-batch-size", "16"]))
    assert to_dict(build(pai, {k: v for k, v in given.items() if k != "command"})[0]) == to_dict(configs)


def test_bad_grids_are_refused_before_anything_runs(cli, tmp_path):
    cases = [("command = 3\n", "must set command"), ('command = "pai"\n[grid]\nseeds = 1\n', "non-empty list"),
             ('command = "pai"\n[grid]\nbogus_option = [1]\n', "do not fit the command"),
             ('command = "pai"\n[fixed]\nseeds = 1\n[grid]\nseeds = [1]\n', "both [fixed] and [grid]"),
             ('command = "pai"\n[extra]\n', "unknown sections"), ("command = [", "not valid TOML")]
    for text, message in cases:
        res = cli("sweep", write(tmp_path, text), "--runs-dir", tmp_path / "runs")
        assert res.code == 2 and message in res.err, (text, res.err)
    assert not (tmp_path / "runs").exists()
    missing = cli("sweep", tmp_path / "none.toml")
    assert missing.code == 2 and "does not exist" in missing.err


def test_yaml_grids_work_like_toml(cli, tmp_path, one_thread):
    pytest.importorskip("yaml")
    text = ("command: pai\nfixed: {dataset: synthetic, train_subset: 600, model: mlp_32_16, steps: 40it, "
            "batch_size: 32, eval_every: 20it}\ngrid: {methods: [random], densities: [0.2], seeds: [0]}\n")
    res = cli("sweep", write(tmp_path, text, "grid.yaml"), "--workers", "1", "--runs-dir", tmp_path / "runs", "--json")
    assert res.code == 0, res.err
    assert res.json()["done"] == 1


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is an optional extra")
@pytest.mark.slow
def test_the_ray_engine_gives_the_local_results(cli, tmp_path, one_thread):
    grid = write(tmp_path, GRID.replace('methods = ["snip", "random"]', 'methods = ["random"]'))
    ray_run = cli("sweep", grid, "--engine", "ray", "--workers", "2", "--runs-dir", tmp_path / "ray", "--json")
    assert ray_run.code == 0, ray_run.err
    local = cli("sweep", grid, "--workers", "2", "--runs-dir", tmp_path / "local", "--json").json()
    assert [r["test_accuracy"] for r in ray_run.json()["rows"]] == [r["test_accuracy"] for r in local["rows"]]
    assert json.loads(json.dumps(ray_run.json()))["engine"] == "ray"
