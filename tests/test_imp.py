"""IMP end to end on tiny data: exact densities, determinism, rewinding, and recovery from SIGKILL."""

import signal
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_IMP, run_subprocess
from ticketlab.ticket import load_ticket


def level_masks(result):
    return [load_ticket(level["ticket"]).mask for level in result["levels"]]


def test_imp_levels_have_exact_densities_and_tickets(cli, tmp_path):
    res = cli("imp", *TINY_IMP, "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    result = res.json()
    masks = level_masks(result)
    total = masks[0].num_total()
    kept = total
    for level, mask in zip(result["levels"], masks):
        assert mask.num_kept() == kept
        assert level["density"] == pytest.approx(kept / total)
        assert {"level", "density", "test_accuracy", "early_stop_iteration", "ticket"} <= set(level)
        kept -= int(round(kept * 0.2))
    for earlier, later in zip(masks, masks[1:]):
        for n in earlier.names():
            assert not (later[n] & ~earlier[n]).any()
    # The ticket's starting weights are θ₀ with the mask applied, and the trained weights respect the mask.
    ticket = load_ticket(result["levels"][2]["ticket"])
    dense = load_ticket(result["levels"][0]["ticket"])
    for n in ticket.mask.names():
        assert torch.equal(ticket.init_state[n], dense.init_state[n] * ticket.mask[n])
        assert torch.all(ticket.trained_state[n][~ticket.mask[n]] == 0)


def test_same_config_and_seed_give_bit_identical_masks(cli, tmp_path):
    a = cli("imp", *TINY_IMP, "--runs-dir", tmp_path / "a", "--json").json()
    b = cli("imp", *TINY_IMP, "--runs-dir", tmp_path / "b", "--json").json()
    for ma, mb in zip(level_masks(a), level_masks(b)):
        assert ma.equals(mb)
    c = cli("imp", *TINY_IMP, "--runs-dir", tmp_path / "c", "--json", "--seed", "1").json()
    assert not level_masks(c)[2].equals(level_masks(a)[2])


def test_rerun_prints_stored_result_and_other_config_gets_another_dir(cli, tmp_path):
    first = cli("imp", *TINY_IMP, "--runs-dir", tmp_path, "--json")
    again = cli("imp", *TINY_IMP, "--runs-dir", tmp_path, "--json")
    assert again.json() == first.json()
    assert "finished" in again.err
    other = cli("imp", *TINY_IMP, "--runs-dir", tmp_path, "--json", "--prune-fraction", "0.5").json()
    assert other["run_dir"] != first.json()["run_dir"]
    assert other["levels"][1]["density"] == pytest.approx(0.5, abs=0.01)


def test_rewinding_restarts_levels_at_k(cli, tmp_path):
    result = cli("imp", *TINY_IMP, "--runs-dir", tmp_path, "--json", "--rewind-step", "20it").json()
    assert result["levels"][0]["start_iteration"] == 0
    assert all(level["start_iteration"] == 20 for level in result["levels"][1:])
    dense = load_ticket(result["levels"][0]["ticket"])
    ticket = load_ticket(result["levels"][1]["ticket"])
    assert ticket.provenance.rewind_step == 20
    # θ_k differs from θ₀ and the level-1 ticket starts from it
    level0 = Path(result["levels"][0]["ticket"]).parent
    from safetensors.torch import load_file
    theta_k = load_file(str(level0 / "rewind.safetensors"))
    name = ticket.mask.names()[0]
    theta_0 = load_file(str(level0 / "init.safetensors"))
    assert not torch.equal(theta_k[name], theta_0[name])
    assert torch.equal(dense.init_state[name], theta_k[name])
    assert torch.equal(ticket.init_state[name], theta_k[name] * ticket.mask[name])


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_level_then_resume_matches_uninterrupted(cli, tmp_path):
    args = [*TINY_IMP, "--steps", "300it", "--eval-every", "25it", "--json"]
    reference = cli("imp", *args, "--runs-dir", tmp_path / "ref").json()

    runs = tmp_path / "killed"
    proc = run_subprocess(["imp", *args, "--runs-dir", runs])
    deadline = time.time() + 120
    # Wait until level 1 has written a checkpoint, i.e. the kill lands in the middle of a level.
    while time.time() < deadline and not list(runs.glob("imp-*/seed-0/level-1/checkpoint.safetensors")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    level_dirs = list(runs.glob("imp-*/seed-0/level-1"))
    assert level_dirs and not (level_dirs[0] / "summary.json").exists(), "the kill did not land mid-level"

    resumed = cli("imp", *args, "--runs-dir", runs).json()
    for ma, mb in zip(level_masks(reference), level_masks(resumed)):
        assert ma.equals(mb)
    ref_dir = Path(reference["run_dir"]) / "seed-0"
    for level in range(3):
        a = (ref_dir / f"level-{level}" / "metrics.jsonl").read_text()
        b = (Path(resumed["run_dir"]) / "seed-0" / f"level-{level}" / "metrics.jsonl").read_text()
        assert a == b
    def strip(levels):  # paths, wall times and the machine's load differ between the two runs; nothing else may
        return [{k: (v["train_examples"] if k == "search_cost" else v) for k, v in lv.items()
                 if "ticket" not in k and "wall_time" not in k and "step_time" not in k and k != "machine"}
                for lv in levels]
    assert strip(resumed["levels"]) == strip(reference["levels"])


def test_each_level_records_the_compute_spent_to_find_it(cli, tmp_path):
    result = cli("imp", *TINY_IMP, "--runs-dir", tmp_path, "--json").json()
    levels = result["levels"]
    assert levels[0]["search_cost"]["train_examples"] == 0
    assert levels[2]["search_cost"]["train_examples"] == levels[0]["train_examples"] + levels[1]["train_examples"]
    assert load_ticket(levels[2]["ticket"]).provenance.search_cost == levels[2]["search_cost"]


def test_conv_layers_can_have_their_own_rate(cli, tmp_path):
    args = ["--dataset", "synthetic-images", "--train-subset", "300", "--model", "conv2", "--steps", "10it",
            "--batch-size", "32", "--eval-every", "10it", "--levels", "1", "--quiet", "--strategy", "layerwise",
            "--prune-fraction", "0.2", "--conv-prune-fraction", "0.1", "--output-prune-fraction", "0.3"]
    result = cli("imp", *args, "--runs-dir", tmp_path, "--json").json()
    ticket = load_ticket(result["levels"][1]["ticket"])
    for name, density in ticket.mask.layer_densities().items():
        expected = 0.7 if name == "classifier.weight" else (0.9 if ticket.init_state[name].dim() == 4 else 0.8)
        assert density == pytest.approx(expected, abs=0.01), name


def test_a_density_schedule_reaches_each_density_exactly(cli, tmp_path):
    args = ["--dataset", "synthetic", "--train-subset", "300", "--model", "mlp_32_16", "--steps", "10it",
            "--batch-size", "32", "--eval-every", "10it", "--quiet", "--schedule", "0.5,0.13,0.031"]
    result = cli("imp", *args, "--runs-dir", tmp_path, "--json").json()
    masks = level_masks(result)
    total = masks[0].num_total()
    assert [m.num_kept() for m in masks] == [total] + [round(d * total) for d in (0.5, 0.13, 0.031)]
    for bad, message in ((["--schedule", "0.5,0.6"], "strictly decreasing"), (["--schedule", "0.5,x"], "bad --schedule"),
                         (["--schedule", "0.5", "--output-prune-fraction", "0.1"], "one rate for every layer")):
        res = cli("imp", *args[:-2], *bad, "--runs-dir", tmp_path / "bad")
        assert res.code == 2 and message in res.err, res.err
        assert not (tmp_path / "bad").exists()
