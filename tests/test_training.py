"""The trainer: masked weights stay zero, resume is bit-identical, rewinding and schedules are exact."""

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from safetensors.torch import load_file

from ticketlab.config import TrainConfig
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.trainer import CHECKPOINT, REWIND, Schedule, train


def random_mask(model, density, seed):
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return Mask({n: torch.rand(params[n].shape, generator=g) < density for n in model.prunable_names})


def masked_values(model, mask):
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach()[~mask[n]] for n in mask.names()])


class CheckingMask(Mask):
    """Checks, after every masking the trainer does, that every pruned weight is exactly zero."""
    model = None
    calls = 0

    def apply_(self, model):
        super().apply_(model)
        CheckingMask.calls += 1
        assert torch.all(masked_values(model, self) == 0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(density=st.floats(0.05, 0.95), seed=st.integers(0, 1000), optimizer=st.sampled_from(["sgd", "adam"]),
       momentum=st.sampled_from([0.0, 0.9]), weight_decay=st.sampled_from([0.0, 1e-3]))
def test_masked_weights_are_exactly_zero_after_every_step_and_load(tmp_path_factory, tiny_data, density, seed,
                                                                     optimizer, momentum, weight_decay):
    out = tmp_path_factory.mktemp("run")
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=seed)
    mask = CheckingMask(random_mask(model, density, seed).tensors)
    cfg = TrainConfig(optimizer=optimizer, lr=0.05, momentum=momentum if optimizer == "sgd" else 0.0,
                      weight_decay=weight_decay, batch_size=50, steps="7it", eval_every="3it")
    CheckingMask.calls = 0
    train(model, tiny_data, cfg, out_dir=out, data_seed=seed, mask=mask, quiet=True)
    assert CheckingMask.calls == 1 + 7  # once at load, once after each of the 7 steps
    # and after loading the saved checkpoint into a fresh model
    fresh = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=seed + 1)
    fresh.load_state_dict({k[6:]: v for k, v in load_file(str(out / CHECKPOINT)).items() if k.startswith("model/")})
    assert torch.all(masked_values(fresh, mask) == 0)
    assert (masked_values(fresh, mask).numel()) == mask.num_total() - mask.num_kept()


def test_resume_after_interruption_is_bit_identical(tmp_path, tiny_data, monkeypatch):
    cfg = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=50, steps="40it", eval_every="7it")
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=3)
    mask = random_mask(model, 0.4, 3)
    ref_model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=3)
    reference = train(ref_model, tiny_data, cfg, out_dir=tmp_path / "ref", data_seed=5, mask=mask, quiet=True)

    calls = {"n": 0}
    original = Mask.apply_

    def interrupting_apply(self, m):
        original(self, m)
        calls["n"] += 1
        if calls["n"] == 30:  # mid-epoch (12 iterations per epoch), after two checkpoints
            raise KeyboardInterrupt

    monkeypatch.setattr(Mask, "apply_", interrupting_apply)
    with pytest.raises(KeyboardInterrupt):
        train(model, tiny_data, cfg, out_dir=tmp_path / "resumed", data_seed=5, mask=mask, quiet=True)
    monkeypatch.setattr(Mask, "apply_", original)
    assert (tmp_path / "resumed" / CHECKPOINT).exists() and not (tmp_path / "resumed" / "summary.json").exists()

    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=3)
    resumed = train(model, tiny_data, cfg, out_dir=tmp_path / "resumed", data_seed=5, mask=mask, quiet=True)
    drop = {"wall_time_seconds", "step_time_seconds"}
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in reference.items() if k not in drop}
    assert (tmp_path / "resumed" / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()
    for name, value in ref_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_rewind_snapshot_is_the_weights_after_k_iterations(tmp_path, tiny_data):
    long_cfg = TrainConfig(batch_size=50, steps="30it", eval_every="10it")
    short_cfg = TrainConfig(batch_size=50, steps="13it", eval_every="13it")
    a = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=1)
    train(a, tiny_data, long_cfg, out_dir=tmp_path / "long", data_seed=2, snapshot_at=13, quiet=True)
    b = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=1)
    train(b, tiny_data, short_cfg, out_dir=tmp_path / "short", data_seed=2, quiet=True)
    snapshot = load_file(str(tmp_path / "long" / REWIND))
    for name, value in b.state_dict().items():
        assert torch.equal(snapshot[name], value), name


def test_schedule_milestones_warmup_and_evaluations(tmp_path, tiny_data):
    cfg = TrainConfig(lr=0.1, batch_size=100, steps="3ep", milestones="1ep,2ep", gamma=0.5, warmup="2it",
                      eval_every="1it")
    schedule = Schedule.of(cfg, len(tiny_data.train_y))
    assert schedule.iterations_per_epoch == 6 and schedule.total == 18 and schedule.milestones == [6, 12]
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=0)
    summary = train(model, tiny_data, cfg, out_dir=tmp_path, data_seed=0, quiet=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["iteration"]: r["lr"] for r in records}  # lr used by the step that ended at this iteration
    assert lrs[1] == pytest.approx(0.05) and lrs[2] == pytest.approx(0.1) and lrs[6] == pytest.approx(0.1)
    assert lrs[7] == pytest.approx(0.05) and lrs[13] == pytest.approx(0.025)
    assert [r["iteration"] for r in records] == list(range(19))
    best = min(records, key=lambda r: r["val_loss"])
    assert summary["early_stop_iteration"] == best["iteration"]
    assert summary["train_examples"] == 18 * 100
