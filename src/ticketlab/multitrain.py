"""Many trainings of one architecture at once: a ticket, its controls, seeds or ablations as one vectorized model.

`train_together` takes K members (each a model, mask, run directory, data seed and optional saved optimizer
state) that share a recipe and a start iteration, stacks their parameters along a new leading dimension and
trains them as one model: one forward, one backward and one optimizer step per iteration for all K, one
evaluation pass for all. ticketlab's MLPs (LeNet-300-100) run as grouped layers (a shared batch meets every
member's first layer in one matrix product, later layers are batched products); other models run through
`torch.func.vmap` over one `functional_call`. Members of one data seed share each batch (drawn and augmented
once); members of different seeds get their own. On a CPU a LeNet step is bound by its multiply-adds, so
stacking saves little there (docs/performance.md); on a GPU K small members cost about what one does.

Each member's results are those of its solo `trainer.train` up to floating-point reassociation: Adam and SGD
act elementwise, so stacking changes nothing there, and the loss summed over members has each member's own
gradient; only the batched matrix products may add in another order. Every member's run directory holds the
files `train` writes (metrics.jsonl, summary.json, checkpoint.safetensors, rewind snapshot), in the same format,
so downstream code reads them unchanged. Resuming is exact: members resume in their own slots of a group of the
original size. Members train one after another with `train` instead when there is one member, under torchrun,
with --precision other than fp32, --compile or --channels-last, or for models with buffers (BatchNorm), dropout
or scalar parameters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ticketlab import distributed, machine, progress
from ticketlab.config import TrainConfig
from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, write_json, write_jsonl, write_safetensors
from ticketlab.mask import Mask
from ticketlab.models.mlp import MLP
from ticketlab.trainer import (CHECKPOINT, EVAL_BATCH, REWIND, REWIND_OPTIMIZER, TRAIN_EVAL_SAMPLE, Schedule,
                               TrainingBatches, _load_checkpoint, _load_optimizer_state, _save_checkpoint,
                               build_optimizer, device_settings, set_learning_rate, summarize, train)

RANDOM_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


@dataclass
class Member:
    """One training of a group: what `trainer.train` takes for one model besides the shared recipe."""
    model: nn.Module
    out_dir: Path
    data_seed: int
    mask: Mask | None = None
    snapshot_at: int | None = None
    optimizer_state: Path | None = None
    label: str = "train"


def train_together(members: list[Member], data: Dataset, cfg: TrainConfig, *, start_iteration: int = 0,
                   quiet: bool = False, vectorize: bool = True) -> list[dict]:
    """Train every member from `start_iteration` to the end of the schedule; return their summaries in order.

    Each model is trained in place and ends with its final weights, as `train` leaves it. Finished members
    return their stored summaries; interrupted ones resume from their checkpoints (members stopped at
    different points resume one group each, every member in its own slot, the others' filled with copies).
    `vectorize=False` trains them one after another.
    """
    schedule = Schedule.of(cfg, len(data.train_y))
    if not 0 <= start_iteration < schedule.total:
        raise TicketlabError(f"start iteration {start_iteration} is outside the training length {schedule.total}; "
                             "choose a rewind step shorter than --steps")
    if not vectorize or sequential_reason(members, cfg) is not None:
        return [train(m.model, data, cfg, out_dir=m.out_dir, data_seed=m.data_seed, mask=m.mask,
                      start_iteration=start_iteration, snapshot_at=m.snapshot_at, optimizer_state=m.optimizer_state,
                      quiet=quiet, label=m.label) for m in members]
    with device_settings(torch.device(cfg.device), cfg.deterministic), machine.torch_threads(cfg.threads):
        return _train_vectorized(members, data, cfg, schedule, start_iteration, quiet)


def _train_vectorized(members: list[Member], data: Dataset, cfg: TrainConfig, schedule: Schedule,
                      start_iteration: int, quiet: bool) -> list[dict]:
    device = distributed.local_device(torch.device(cfg.device))
    shared_batch = len({m.data_seed for m in members}) == 1
    summaries: list[dict | None] = [None] * len(members)
    groups: dict[str, list[_Run]] = {}
    for index, member in enumerate(members):
        run = _Run.open(member, cfg, device, start_iteration)
        run.slot = index
        if (member.out_dir / "summary.json").exists() and run.state["iteration"] == schedule.total:
            summaries[index] = read_json(member.out_dir / "summary.json")
        else:
            groups.setdefault(run.resume_key(), []).append(run)
    for runs in groups.values():
        # A group resuming without some members keeps every member's slot and the batch layout, filling the
        # others with copies of a member: a member's arithmetic is then that of the uninterrupted group, bit for bit.
        slots = [runs[0]] * len(members)
        for run in runs:
            slots[run.slot] = run
        for run, summary in zip(runs, _train_group(slots, [r.slot for r in runs], shared_batch, data, cfg, schedule,
                                                   start_iteration, device, quiet)):
            summaries[run.slot] = summary
    return summaries


def sequential_reason(members: list[Member], cfg: TrainConfig) -> str | None:
    """Why these members cannot train as one vectorized model (None when they can)."""
    if len(members) < 2:
        return "a single member"
    if distributed.world()[1] > 1:
        return "data-parallel training (torchrun)"
    if cfg.precision != "fp32" or cfg.compile or cfg.channels_last:
        return "--precision, --compile or --channels-last (the vectorized step runs in fp32, uncompiled)"
    first = members[0].model
    shapes = [(name, tuple(p.shape)) for name, p in first.named_parameters()]
    for member in members:
        model = member.model
        if type(model) is not type(first) or [(n, tuple(p.shape)) for n, p in model.named_parameters()] != shapes:
            return "members of different architectures"
        if any(True for _ in model.buffers()):
            return "a model with buffers (BatchNorm statistics)"
        if any(isinstance(module, RANDOM_MODULES) for module in model.modules()):
            return "a model with dropout"
        if any(p.dim() == 0 for p in model.parameters()):
            return "a model with scalar parameters"
    return None


class _Run:
    """One member's training state: the trainer's counters and metrics, its model and a solo optimizer that
    carries its optimizer state in and out of the group (checkpoints, snapshots)."""

    def __init__(self, member: Member, optimizer: torch.optim.Optimizer, state: dict):
        self.member, self.optimizer, self.state = member, optimizer, state
        self.slot = 0  # the member's place in its group

    @classmethod
    def open(cls, member: Member, cfg: TrainConfig, device: torch.device, start_iteration: int) -> "_Run":
        model = member.model.to(device)
        if member.mask is not None:
            member.mask.check_matches(model)
            member.mask.apply_(model)
        optimizer = build_optimizer(model, cfg)
        state = {"iteration": start_iteration, "metrics": [], "loss_sum": 0.0, "correct": 0, "seen": 0,
                 "wall_time": 0.0, "train_examples": 0, "eval_examples": 0}
        checkpoint_path = member.out_dir / CHECKPOINT
        if checkpoint_path.exists():
            state = _load_checkpoint(checkpoint_path, model, optimizer)
            if member.mask is not None:
                member.mask.apply_(model)
        elif member.optimizer_state is not None:
            _load_optimizer_state(Path(member.optimizer_state), optimizer)
        return cls(member, optimizer, state)

    def resume_key(self) -> str:
        """Members train together only from the same iteration with the same optimizer counters (Adam's step)."""
        counters = {index: {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in values.items()
                            if not _stacks(k, v)}
                    for index, values in self.optimizer.state_dict()["state"].items()}
        return json.dumps([self.state["iteration"], counters], sort_keys=True, default=str)

    def save(self, name: str, state: dict) -> None:
        _save_checkpoint(self.member.out_dir / name, self.member.model, self.optimizer, state)


def _stacks(key: str, value) -> bool:
    """Optimizer state entries stacked along the member dimension: per-weight tensors, not the step counter."""
    return isinstance(value, torch.Tensor) and value.dim() > 0 and key != "step"


class _Stacked:
    """The members' parameters stacked along dimension 0 (one slot each), one optimizer over them, and masks to
    match. `real` lists the slots whose results count; the others hold copies that keep the group's shape."""

    def __init__(self, runs: list[_Run], real: list[int], cfg: TrainConfig):
        self.runs, self.real = runs, real
        self.template = runs[0].member.model
        self.names = [name for name, _ in self.template.named_parameters()]
        self.mlp_layers = None
        per_member = [dict(r.member.model.named_parameters()) for r in runs]
        holder = nn.ParameterList(torch.stack([p[name].detach() for p in per_member]) for name in self.names)
        self.params = list(holder)
        self.optimizer = build_optimizer(holder, cfg)
        states = [r.optimizer.state_dict() for r in runs]
        stacked_state = {index: {key: torch.stack([s["state"][index][key] for s in states]) if _stacks(key, value)
                                 else value for key, value in values.items()}
                         for index, values in states[0]["state"].items()}
        self.optimizer.load_state_dict({"state": stacked_state, "param_groups": states[0]["param_groups"]})
        masked = [name for name in self.names if any(r.member.mask is not None and name in r.member.mask.tensors
                                                     for r in runs)]
        self.masked_params = [self.params[self.names.index(name)] for name in masked]
        self.masks = [torch.stack([_keep(r.member.mask, name, p) for r, p in zip(runs, self._member_views(name))])
                      for name in masked]
        if type(self.template) is MLP:
            stacked = dict(zip(self.names, self.params))
            layers = [f"hidden.{i}" for i in range(len(self.template.hidden))] + ["classifier"]
            self.mlp_layers = [(stacked[f"{layer}.weight"], stacked[f"{layer}.bias"]) for layer in layers]

    def _member_views(self, name: str) -> list[torch.Tensor]:
        return list(self.params[self.names.index(name)].detach().unbind(0))

    @torch.no_grad()
    def apply_masks(self) -> None:
        if self.masked_params:
            torch._foreach_mul_(self.masked_params, self.masks)

    def logits(self, x: torch.Tensor, per_member_input: bool) -> torch.Tensor:
        """Every member's logits for its input: x is shared, or one input per member along dimension 0."""
        if self.mlp_layers is not None:
            return self._mlp_logits(x, per_member_input)

        def forward(params, inputs):
            return functional_call(self.template, dict(zip(self.names, params)), (inputs,))
        return vmap(forward, in_dims=(0, 0 if per_member_input else None))(self.params, x)

    def _mlp_logits(self, x: torch.Tensor, per_member_input: bool) -> torch.Tensor:
        """ticketlab's MLPs as grouped layers, the forward of models.mlp.MLP for all members: on 2 CPU cores it
        costs about a third less than vmap's batching of the same products. A shared input meets every member's
        first layer in one matrix product (the weights side by side); later layers are batched products."""
        last = len(self.mlp_layers) - 1
        if per_member_input:
            h, first = x.flatten(2), 0
        else:
            weight, bias = self.mlp_layers[0]
            members, batch = weight.shape[0], x.shape[0]
            h = F.linear(x.flatten(1), weight.flatten(0, 1), bias.flatten()).view(batch, members, -1).transpose(0, 1)
            h, first = (torch.relu(h) if last > 0 else h), 1
        for index in range(first, last + 1):
            weight, bias = self.mlp_layers[index]
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if index < last:
                h = torch.relu(h)
        return h

    @torch.no_grad()
    def write_back(self, which: list[int] | None = None) -> None:
        """Copy the stacked weights and optimizer state of real slots into the members' own model and optimizer."""
        stacked = self.optimizer.state_dict()
        for i in (self.real if which is None else which):
            run = self.runs[i]
            for name, param in run.member.model.named_parameters():
                param.copy_(self.params[self.names.index(name)][i])
            state = {index: {key: value[i].clone() if _stacks(key, value) else value for key, value in values.items()}
                     for index, values in stacked["state"].items()}
            run.optimizer.load_state_dict({"state": state, "param_groups": stacked["param_groups"]})


def _keep(mask: Mask | None, name: str, like: torch.Tensor) -> torch.Tensor:
    if mask is None or name not in mask.tensors:
        return torch.ones_like(like)
    return mask[name].to(device=like.device, dtype=like.dtype)


@torch.inference_mode()
def _evaluate(stacked: _Stacked, x: torch.Tensor, y: torch.Tensor, standardize) -> list[tuple[float, float]]:
    """Each member's mean cross-entropy and accuracy over a whole split of stored inputs, in `trainer.evaluate`'s
    batches."""
    members = len(stacked.runs)
    if len(y) == 0:
        return [(float("nan"), float("nan"))] * members
    loss_sums, corrects = [0.0] * members, [0] * members
    stacked.template.eval()
    for start in range(0, len(y), EVAL_BATCH):
        logits = stacked.logits(standardize(x[start:start + EVAL_BATCH]), per_member_input=False)
        target = y[start:start + EVAL_BATCH]
        losses = vmap(lambda member_logits: F.cross_entropy(member_logits, target, reduction="sum"))(logits)
        correct = (logits.argmax(-1) == target).sum(-1)
        for i, (loss, hits) in enumerate(zip(losses.tolist(), correct.tolist())):
            loss_sums[i] += loss
            corrects[i] += hits
    stacked.template.train()
    return [(loss_sum / len(y), hits / len(y)) for loss_sum, hits in zip(loss_sums, corrects)]


def _train_group(slots: list[_Run], real: list[int], shared_batch: bool, data: Dataset, cfg: TrainConfig,
                 schedule: Schedule, start_iteration: int, device: torch.device, quiet: bool) -> list[dict]:
    """The trainer's loop for the members in `real` slots, resuming at one iteration, with one vectorized step
    for all slots; returns the real members' summaries."""
    started_on = machine.describe()  # threads and load at the start: what the timings depend on
    stacked = _Stacked(slots, real, cfg)
    runs = [slots[i] for i in real]
    stacked.apply_masks()
    # Inputs as stored (8-bit pixels stay 8-bit), standardized a batch at a time, as `train` does.
    splits = {name: (data.stored(name).to(device), getattr(data, f"{name}_y").to(device))
              for name in ("train", "val", "test")}
    train_x, train_y = splits["train"]
    augment = data.augment if cfg.augment == "auto" else cfg.augment
    seeds = sorted({r.member.data_seed for r in slots})
    batches = {seed: TrainingBatches(train_x, train_y, cfg.batch_size, schedule.iterations_per_epoch, seed, augment,
                                     data.standardize) for seed in seeds}
    states = [r.state for r in runs]
    # One bar (or progress line) for the group, showing its first member's loss and accuracy; each member's
    # records also go to its own TensorBoard or CSV files, as `train` writes them.
    reporter = progress.Reporter(" + ".join(r.member.label for r in runs), schedule.total, states[0]["iteration"],
                                 quiet=quiet)
    scalars = [progress.ScalarLog(cfg.log, r.member.out_dir) if cfg.log != "none" else None for r in runs]

    def record(iteration: int, lr: float) -> None:
        results = {split: _evaluate(stacked, *splits[split], data.standardize) for split in ("val", "test")}
        for slot, state, scalar_log in zip(real, states, scalars):
            entry = {"iteration": iteration, "epoch": iteration / schedule.iterations_per_epoch, "lr": lr,
                     "train_loss": state["loss_sum"] / state["seen"] if state["seen"] else None,
                     "train_accuracy": state["correct"] / state["seen"] if state["seen"] else None}
            for split in ("val", "test"):
                entry[f"{split}_loss"], entry[f"{split}_accuracy"] = results[split][slot]
                state["eval_examples"] += len(splits[split][1])
            state["metrics"].append(entry)
            if scalar_log is not None:
                scalar_log.add(entry)
            state["loss_sum"], state["correct"], state["seen"] = 0.0, 0, 0
        reporter.evaluated(states[0]["metrics"][-1]["val_accuracy"])

    def snapshot(which: list[int]) -> None:
        stacked.write_back(which)
        for i in which:
            write_safetensors(slots[i].member.out_dir / REWIND, slots[i].member.model.state_dict())
            slots[i].save(REWIND_OPTIMIZER, {})

    def checkpoint() -> None:
        stacked.write_back()
        for run, scalar_log in zip(runs, scalars):  # metrics first, checkpoint last, as `train` writes them
            write_jsonl(run.member.out_dir / "metrics.jsonl", run.state["metrics"])
            if scalar_log is not None:
                scalar_log.save(run.state["metrics"])
            run.save(CHECKPOINT, run.state)

    def snapshots_at(iteration: int) -> list[int]:
        return [i for i in real if slots[i].member.snapshot_at == iteration]

    started = time.perf_counter()
    first = states[0]["iteration"]
    if first == start_iteration and not states[0]["metrics"]:
        if snapshots_at(first):
            snapshot(snapshots_at(first))
        record(first, schedule.learning_rate(first))
    stacked.template.train()

    def running() -> tuple[float | None, float | None]:
        seen = states[0]["seen"]
        return (states[0]["loss_sum"] / seen, states[0]["correct"] / seen) if seen else (None, None)
    step_time = 0.0
    for iteration in range(first, schedule.total):
        if shared_batch:
            x, y = batches[seeds[0]].at(iteration)
        else:
            drawn = {seed: batches[seed].at(iteration) for seed in seeds}
            x = torch.stack([drawn[r.member.data_seed][0] for r in slots])
            y = torch.stack([drawn[r.member.data_seed][1] for r in slots])
        step_started = time.perf_counter()
        lr = schedule.learning_rate(iteration)
        set_learning_rate(stacked.optimizer, lr)
        logits = stacked.logits(x, per_member_input=not shared_batch)
        if shared_batch:
            losses = vmap(lambda member_logits: F.cross_entropy(member_logits, y))(logits)
        else:
            losses = vmap(F.cross_entropy)(logits, y)
        stacked.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # each member's gradient is its own loss's: the others' do not depend on it
        stacked.optimizer.step()
        stacked.apply_masks()
        step_time += time.perf_counter() - step_started

        hits = (logits.detach().argmax(-1) == y).sum(-1).tolist()
        slot_losses = losses.detach().tolist()
        batch_size = y.shape[-1]
        for state, slot in zip(states, real):
            state["loss_sum"] += slot_losses[slot] * batch_size
            state["correct"] += hits[slot]
            state["seen"] += batch_size
            state["train_examples"] += batch_size
        done = iteration + 1
        for state in states:
            state["iteration"] = done
        if snapshots_at(done):
            snapshot(snapshots_at(done))
        if done % schedule.eval_every == 0 or done == schedule.total:
            record(done, lr)
        if done % schedule.iterations_per_epoch == 0 or done == schedule.total:
            # Each member is charged its share of the group's time: together they cost what the group cost.
            elapsed, started = time.perf_counter() - started, time.perf_counter()
            for state in states:
                state["wall_time"] += elapsed / len(runs)
                state["step_time"] = state.get("step_time", 0.0) + step_time / len(runs)
            step_time = 0.0
            checkpoint()
        reporter.advance(done, running, final=done == schedule.total)
    reporter.close()
    for scalar_log in scalars:
        if scalar_log is not None:
            scalar_log.close()

    sample = slice(0, TRAIN_EVAL_SAMPLE)
    final_train = _evaluate(stacked, train_x[sample], train_y[sample], data.standardize)
    summaries = []
    for run, slot in zip(runs, real):
        train_loss, train_accuracy = final_train[slot]
        state = run.state
        summary = summarize(state["metrics"])
        summary["final_train_loss"], summary["final_train_accuracy"] = train_loss, train_accuracy
        summary.update(iterations=schedule.total, start_iteration=start_iteration,
                       wall_time_seconds=round(state["wall_time"], 3),
                       step_time_seconds=round(state.get("step_time", 0.0), 3),
                       train_examples=state["train_examples"], eval_examples=state["eval_examples"],
                       machine=started_on)
        write_json(run.member.out_dir / "summary.json", summary)
        summaries.append(summary)
    return summaries
