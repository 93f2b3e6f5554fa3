"""Many trainings at once: each member of a vectorized group gets its solo run's results (within float
reassociation), masked weights stay exactly zero, interrupted groups resume to the uninterrupted files bit for
bit, and models that cannot be vectorized train one by one with `train`."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ticketlab import multitrain
from ticketlab.config import TrainConfig
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.multitrain import Member, sequential_reason, train_together
from ticketlab.pruning import magnitude_prune
from ticketlab.trainer import CHECKPOINT, REWIND, build_optimizer, train

# Members equal their solo runs up to floating-point reassociation in the batched products: after these short
# trainings every weight and every recorded loss agrees within TOLERANCE (measured differences: ~1e-7).
TOLERANCE = 1e-5
CFG = TrainConfig(optimizer="adam", lr=3e-3, batch_size=32, steps="40it", eval_every="10it")


class TanhNet(nn.Module):
    """A model of one's own (not ticketlab's MLP): trained through vmap rather than grouped layers."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(20, 24)
        self.classifier = nn.Linear(24, 10)

    def forward(self, x):
        return self.classifier(torch.tanh(self.fc(x)))


def mlp(data, seed):
    return create_model("mlp_32_16", data.input_shape, data.num_classes, seed=seed)


def tanh_net(data, seed):
    return TanhNet(seed)


def members_of(data, root: Path, seeds=(0, 1, 2), data_seeds=(5, 5, 6), densities=(1.0, 0.5, 0.3), build=mlp):
    """Fresh models of one architecture, each with its own init seed, data seed and magnitude mask."""
    members = []
    for index, (seed, data_seed, density) in enumerate(zip(seeds, data_seeds, densities)):
        model = build(data, seed)
        mask = magnitude_prune(Mask.ones(model), dict(model.named_parameters()), 1 - density, "global",
                               getattr(model, "output_name", "classifier"))
        members.append(Member(model, root / f"member-{index}", data_seed, mask, snapshot_at=4, label=f"m{index}"))
    return members


def solo_runs(data, root: Path, cfg=CFG, **kwargs):
    out = []
    for m in members_of(data, root, **kwargs):
        summary = train(m.model, data, cfg, out_dir=m.out_dir, data_seed=m.data_seed, mask=m.mask,
                        snapshot_at=m.snapshot_at, quiet=True)
        out.append((m, summary))
    return out


def metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def assert_close_runs(a: Path, b: Path) -> None:
    for x, y in zip(metrics(a), metrics(b), strict=True):
        assert x.keys() == y.keys() and x["iteration"] == y["iteration"]
        for key, value in x.items():
            if value is not None:
                assert y[key] == pytest.approx(value, abs=TOLERANCE), key


@pytest.mark.parametrize("build", [mlp, tanh_net])  # grouped layers, vmap
@pytest.mark.parametrize("data_seeds", [(5, 5, 6), (5, 5, 5)])  # a batch per member, one batch shared
def test_each_member_matches_its_solo_run(tiny_data, tmp_path, one_thread, build, data_seeds):
    solo = solo_runs(tiny_data, tmp_path / "solo", build=build, data_seeds=data_seeds)
    group = members_of(tiny_data, tmp_path / "group", build=build, data_seeds=data_seeds)
    assert sequential_reason(group, CFG) is None
    summaries = train_together(group, tiny_data, CFG, quiet=True)
    assert len(summaries) == len(solo)
    for (solo_member, solo_summary), member, summary in zip(solo, group, summaries):
        solo_weights, weights = dict(solo_member.model.named_parameters()), dict(member.model.named_parameters())
        for name, value in solo_weights.items():
            assert torch.allclose(weights[name], value, atol=TOLERANCE, rtol=0), name
        for key in ("test_loss", "val_accuracy", "test_accuracy", "final_train_loss", "early_stop_val_loss"):
            assert summary[key] == pytest.approx(solo_summary[key], abs=TOLERANCE), key
        assert summary["early_stop_iteration"] == solo_summary["early_stop_iteration"]
        assert summary["train_examples"] == solo_summary["train_examples"]
        assert_close_runs(solo_member.out_dir, member.out_dir)
        # the same files, with the same tensors, as `train` writes
        assert sorted(p.name for p in member.out_dir.iterdir()) == sorted(p.name for p in solo_member.out_dir.iterdir())
        for name in (CHECKPOINT, REWIND):
            ours, theirs = load_file(member.out_dir / name), load_file(solo_member.out_dir / name)
            assert ours.keys() == theirs.keys()
            for key in ours:
                assert torch.allclose(ours[key].float(), theirs[key].float(), atol=TOLERANCE, rtol=0), (name, key)
    # the members really differ from one another (distinct inits, masks, data orders)
    assert not torch.equal(group[0].model.classifier.weight, group[1].model.classifier.weight)
    runs = [multitrain._Run(m, build_optimizer(m.model, CFG), {}) for m in group]
    assert (multitrain._Stacked(runs, [0, 1, 2], CFG).mlp_layers is None) == (build is tanh_net)


def test_masked_weights_stay_exactly_zero(tiny_data, tmp_path, one_thread):
    group = members_of(tiny_data, tmp_path)
    train_together(group, tiny_data, CFG, quiet=True)
    for member in group:
        params = dict(member.model.named_parameters())
        for name in member.mask.names():
            pruned = params[name][~member.mask[name]]
            assert pruned.numel() > 0 or member.mask.density() == 1
            assert torch.all(pruned == 0), name
            assert torch.count_nonzero(params[name][member.mask[name]]) > 0


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("fail_at", [2, 5])  # a whole group stopped, or one member's checkpoint ahead of the others
def test_interrupted_group_resumes_to_the_uninterrupted_files(tiny_data, tmp_path, one_thread, monkeypatch, fail_at):
    cfg = TrainConfig(optimizer="adam", lr=3e-3, batch_size=100, steps="30it", eval_every="5it")  # 4 its/epoch
    reference = members_of(tiny_data, tmp_path / "ref")
    train_together(reference, tiny_data, cfg, quiet=True)

    saves = []
    original = multitrain._Run.save

    def failing_save(run, name, state):
        if name == CHECKPOINT:
            saves.append(run.member.label)
            if len(saves) == fail_at:
                raise Interrupted
        original(run, name, state)

    monkeypatch.setattr(multitrain._Run, "save", failing_save)
    with pytest.raises(Interrupted):
        train_together(members_of(tiny_data, tmp_path / "run"), tiny_data, cfg, quiet=True)
    monkeypatch.setattr(multitrain._Run, "save", original)
    resumed = members_of(tiny_data, tmp_path / "run")
    summaries = train_together(resumed, tiny_data, cfg, quiet=True)
    for ref, member, summary in zip(reference, resumed, summaries):
        assert (member.out_dir / "metrics.jsonl").read_bytes() == (ref.out_dir / "metrics.jsonl").read_bytes()
        assert (member.out_dir / REWIND).read_bytes() == (ref.out_dir / REWIND).read_bytes()
        for name, value in ref.model.state_dict().items():
            assert torch.equal(member.model.state_dict()[name], value), name
        assert summary["test_loss"] == json.loads((ref.out_dir / "summary.json").read_text())["test_loss"]
    # a finished group returns its stored summaries and final weights
    again = members_of(tiny_data, tmp_path / "run")
    assert [s["test_loss"] for s in train_together(again, tiny_data, cfg, quiet=True)] == \
        [s["test_loss"] for s in summaries]
    assert torch.equal(again[1].model.classifier.weight, resumed[1].model.classifier.weight)


class NormedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(20, 16)
        self.norm = nn.BatchNorm1d(16)
        self.classifier = nn.Linear(16, 10)

    def forward(self, x):
        return self.classifier(torch.relu(self.norm(self.fc(x))))


def test_models_with_buffers_train_one_by_one_as_train_does(tiny_data, tmp_path, one_thread):
    def group(root):
        out = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            out.append(Member(NormedNet(), root / f"m{seed}", data_seed=3))
        return out

    members = group(tmp_path / "group")
    assert "buffers" in sequential_reason(members, CFG)
    summaries = train_together(members, tiny_data, CFG, quiet=True)
    for solo, summary, member in zip(group(tmp_path / "solo"), summaries, members):
        expected = train(solo.model, tiny_data, CFG, out_dir=solo.out_dir, data_seed=3, quiet=True)
        assert summary["test_loss"] == expected["test_loss"]
        assert torch.equal(member.model.norm.running_mean, solo.model.norm.running_mean)
    assert sequential_reason(members[:1], CFG) == "a single member"
