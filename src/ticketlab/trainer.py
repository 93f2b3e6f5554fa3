"""The one training loop: dense nets, tickets and controls all train here.

Masking is a multiply in place after each optimizer step. Batch order and augmentation are pure
functions of (data seed, iteration), and the learning rate a function of the iteration, so training
resumes mid-run from a checkpoint with bit-identical results, and a ticket rewound to θ_k continues
the schedule and data order at k. Validation and test sets are evaluated every `eval_every`
iterations; the early-stopping iteration is the one with the minimum validation loss.

Under torchrun (see ticketlab.distributed) training is data-parallel: every rank draws the same global
batch, augments it the same way, and trains on its own equal slice through DistributedDataParallel,
whose averaged gradient is the gradient of the global batch's mean loss. Masking, evaluation (each rank
evaluates whole splits) and the counters behind the metrics are the same on every rank; rank 0 writes
the files. BatchNorm normalizes with each rank's own slice (no SyncBatchNorm), and the running
statistics kept are rank 0's, copied to all ranks after every step.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab import distributed, machine, optim, progress
from ticketlab.config import TrainConfig, derive_seed
from ticketlab.data import Dataset, augment_batch, batches_per_epoch, epoch_permutation
from ticketlab.data.augment import CROP_PADDING, flip_and_shift, flip_crop_draws
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, read_safetensors, write_json, write_jsonl, write_safetensors
from ticketlab.mask import Mask
from ticketlab.steps import to_iteration_list, to_iterations

CHECKPOINT = "checkpoint.safetensors"
REWIND = "rewind.safetensors"
REWIND_OPTIMIZER = "rewind-optimizer.safetensors"
EVAL_BATCH = 256  # conv nets evaluate ~3x faster on CPU in batches this size than in batches of 2000
TRAIN_EVAL_SAMPLE = 10_000
COUNTERS = ("loss_sum", "correct", "seen", "train_examples")  # summed over ranks in a distributed run


@dataclass
class Schedule:
    """A TrainConfig resolved to iterations for one dataset, and its learning rate at every iteration."""
    iterations_per_epoch: int
    total: int
    milestones: list[int]
    warmup: int
    eval_every: int
    base_lr: float = 0.1
    gamma: float = 0.1

    @classmethod
    def of(cls, cfg: TrainConfig, num_train: int) -> "Schedule":
        ipe = batches_per_epoch(num_train, cfg.batch_size)
        total = to_iterations(cfg.steps, ipe, "steps")
        if total < 1:
            raise TicketlabError(f"--steps {cfg.steps} is zero iterations; give a positive length")
        every = to_iterations(cfg.eval_every, ipe, "eval-every")
        if every < 1:
            raise TicketlabError(f"--eval-every {cfg.eval_every} is zero iterations; give a positive interval")
        return cls(ipe, total, sorted(to_iteration_list(cfg.milestones, ipe, "milestone")),
                   to_iterations(cfg.warmup, ipe, "warmup"), every, cfg.lr, cfg.gamma)

    def learning_rate(self, iteration: int) -> float:
        """The lr of the optimizer step taken at `iteration` (0-based): a pure function of the iteration, so a
        run started, rewound or resumed at any point, a milestone included, uses the uninterrupted run's lr.
        A milestone m decays the lr from step m on; warm-up scales steps 0 .. warmup-1 linearly."""
        decays = sum(1 for m in self.milestones if m <= iteration)
        factor = (iteration + 1) / self.warmup if 0 < self.warmup and iteration < self.warmup else 1.0
        return self.base_lr * self.gamma ** decays * factor

    def final_lr(self) -> float:
        """The learning rate the schedule ends at, without warm-up (used by the fine-tuning baseline)."""
        return self.base_lr * self.gamma ** sum(1 for m in self.milestones if m < self.total)


class TrainingBatches:
    """The training batch of any iteration, a pure function of (data seed, iteration): one shuffle per
    epoch, index slices, batched augmentation. A resumed run, and any other training loop, sees
    exactly the batches an uninterrupted run would.

    The random choices (the order, the flip-crop draws) are made on the CPU, whatever the device, so every
    device sees the same batches; they are made for a whole epoch at once and copied to the data's device
    in one go, so a step on a GPU gathers and augments its batch without waiting on the host."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, iterations_per_epoch: int, data_seed: int,
                 augment: str, standardize: Callable[[torch.Tensor], torch.Tensor] | None = None):
        # `standardize` turns a batch of stored inputs (a Dataset's 8-bit pixels) into model inputs, before augmentation.
        self.x, self.y, self.batch_size, self.standardize = x, y, batch_size, standardize
        self.iterations_per_epoch, self.data_seed, self.augment = iterations_per_epoch, data_seed, augment
        self._epoch, self._order, self._draws = None, None, None

    def at(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, batch_index = divmod(iteration, self.iterations_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._draws = epoch, None
            self._order = epoch_permutation(len(self.y), self.data_seed, epoch).to(self.y.device)
        rows = slice(batch_index * self.batch_size, (batch_index + 1) * self.batch_size)
        idx = self._order[rows]
        x, y = self.x.index_select(0, idx.to(self.x.device)), self.y.index_select(0, idx)
        if self.standardize is not None:
            x = self.standardize(x)
        if self.augment == "flip-crop" and x.ndim == 4:
            if self._draws is None:
                self._draws = self._epoch_draws(epoch)
            flip, shift_y, shift_x = (draw[rows] for draw in self._draws)
            x = flip_and_shift(x, flip, shift_y, shift_x, CROP_PADDING)
        elif self.augment != "none":  # not images, or an unknown kind: augment_batch says what is wrong
            generator = torch.Generator().manual_seed(derive_seed(self.data_seed, f"augment:{iteration}"))
            x = augment_batch(x, self.augment, generator)
        return x, y

    def _epoch_draws(self, epoch: int) -> tuple[torch.Tensor, ...]:
        """Every batch's flip-crop draws of one epoch, concatenated and on the data's device. Each batch's
        come from its own generator seeded by (data seed, iteration), as augment_batch would draw them."""
        first = epoch * self.iterations_per_epoch
        draws = []
        for batch_index in range(self.iterations_per_epoch):
            size = len(self._order[batch_index * self.batch_size:(batch_index + 1) * self.batch_size])
            generator = torch.Generator().manual_seed(derive_seed(self.data_seed, f"augment:{first + batch_index}"))
            draws.append(flip_crop_draws(size, generator))
        return tuple(torch.cat(parts).to(self.x.device) for parts in zip(*draws))


def training_device(cfg: TrainConfig) -> torch.device:
    """The device a recipe trains and scores on (under torchrun, a bare "cuda" is the process's own GPU)."""
    return distributed.local_device(torch.device(cfg.device))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(model.parameters())
    # On the CPU, ticketlab.optim: the same arithmetic as torch.optim's without importing torch._dynamo (seconds).
    library = optim if all(p.device.type == "cpu" for p in params) else torch.optim
    if cfg.optimizer == "sgd":
        return library.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return library.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise TicketlabError(f"unknown optimizer {cfg.optimizer!r}; known: sgd, adam")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             standardize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split (nan for an empty split); `standardize` makes each
    batch of stored inputs (a Dataset's 8-bit pixels) model inputs."""
    if len(y) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    # Summed on the device (float64, as the host summed before) and read once, not once a batch.
    loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    for start in range(0, len(y), EVAL_BATCH):
        batch = x[start:start + EVAL_BATCH]
        logits = model(batch if standardize is None else standardize(batch))
        target = y[start:start + EVAL_BATCH]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(1) == target).sum()
    model.train(was_training)
    return float(loss_sum) / len(y), int(correct) / len(y)


def early_stop(metrics: list[dict]) -> dict | None:
    """The evaluation record with the minimum validation loss (first one on ties)."""
    scored = [m for m in metrics if m.get("val_loss") is not None and not math.isnan(m["val_loss"])]
    return min(scored, key=lambda m: m["val_loss"]) if scored else None


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceCounters:
    """The training loss and accuracy counters, kept on the training device and read only at evaluation
    and checkpoint points, so a step never waits for its loss to reach the host. The loss is summed in
    float64 in the order the host summed it, so the recorded metrics are the same to the bit."""

    def __init__(self, device: torch.device, loss_sum: float = 0.0, correct: int = 0):
        self.loss_sum = torch.tensor(loss_sum, dtype=torch.float64, device=device)
        self.correct = torch.tensor(correct, dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, examples: float, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Count one batch: its mean `loss` weighted by `examples`, and its correct predictions."""
        self.loss_sum += loss.detach().double() * examples
        self.correct += (logits.detach().argmax(1) == y).sum()

    def read(self) -> tuple[float, int]:
        return float(self.loss_sum), int(self.correct)

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.correct.zero_()


class StepClock:
    """Seconds spent in optimization steps. On CUDA, events around each step, added up at evaluation points
    (reading the host clock there would time only the kernel launches); elsewhere, the host clock."""

    def __init__(self, device: torch.device, seconds: float = 0.0):
        self.device, self.seconds = device, seconds
        self._events: list[tuple] = []
        self._started = None

    def start(self) -> None:
        if self.device.type == "cuda":
            self._started = torch.cuda.Event(enable_timing=True)
            self._started.record()
        else:
            self._started = time.perf_counter()

    def stop(self) -> None:
        if self.device.type == "cuda":
            stopped = torch.cuda.Event(enable_timing=True)
            stopped.record()
            self._events.append((self._started, stopped))
        else:
            if self.device.type != "cpu":
                torch.accelerator.synchronize(self.device)
            self.seconds += time.perf_counter() - self._started

    def read(self) -> float:
        if self._events:
            self._events[-1][1].synchronize()
            self.seconds += sum(start.elapsed_time(stop) for start, stop in self._events) / 1000
            self._events.clear()
        return self.seconds


class TrainStep:
    """One optimization step: forward (under autocast at bf16 or fp16), backward (fp16 loss scaled), optimizer
    step, masking, counters. Nothing in it reads a value back to the host, so a GPU runs ahead of the Python
    loop; the one exception is fp16, whose loss scaler checks every step for overflowed gradients."""

    def __init__(self, model: nn.Module, forward: Callable, optimizer: torch.optim.Optimizer, mask: Mask | None,
                 cfg: TrainConfig, device: torch.device, counters: DeviceCounters):
        self.model, self.forward, self.optimizer, self.mask, self.counters = model, forward, optimizer, mask, counters
        self.rank_count = distributed.world()[1]
        amp_dtype = AUTOCAST_DTYPES.get(cfg.precision)
        self.autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
        self.channels_last = cfg.channels_last
        self.scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, global_size: int) -> None:
        world = self.rank_count
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            logits = self.forward(x)
            if world == 1:
                loss = F.cross_entropy(logits, y)
            else:
                # DDP averages the ranks' gradients; weighting each slice's summed loss by world / global size
                # makes that the gradient of the global batch's mean loss, even for an uneven last batch.
                loss = F.cross_entropy(logits, y, reduction="sum") * (world / global_size)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.mask is not None:
            self.mask.apply_(self.model)
        if world > 1:
            distributed.sync_buffers(self.model)
        self.counters.add(loss, len(y) if world == 1 else global_size / world, logits, y)


@contextlib.contextmanager
def device_settings(device: torch.device, deterministic: bool):
    """Process-wide torch settings for one training, restored after it. Deterministic mode: only deterministic
    algorithms (cuBLAS with a fixed workspace, no cuDNN autotuning; an op that has no deterministic version
    warns). Otherwise, on CUDA, cuDNN picks its fastest convolution algorithms by timing them."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark)
    if deterministic:
        # Read by cuBLAS when its first handle is made: set before any CUDA matrix product in the process.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        if deterministic:  # use_deterministic_algorithms imports torch._inductor and torch._dynamo (seconds)
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def _under_device_settings(train_function: Callable) -> Callable:
    """Run a training under its recipe's device settings, and give the model back in the standard memory
    format however the training ends (channels-last is the trainer's business, not its caller's)."""
    @functools.wraps(train_function)
    def wrapper(model: nn.Module, data: Dataset, cfg: TrainConfig, **options) -> dict:
        try:
            with device_settings(torch.device(cfg.device), cfg.deterministic), machine.torch_threads(cfg.threads):
                return train_function(model, data, cfg, **options)
        finally:
            if cfg.channels_last:
                model.to(memory_format=torch.contiguous_format)
    return wrapper


@_under_device_settings
def train(model: nn.Module, data: Dataset, cfg: TrainConfig, *, out_dir: str | Path, data_seed: int,
          mask: Mask | None = None, start_iteration: int = 0, snapshot_at: int | None = None,
          optimizer_state: str | Path | None = None, quiet: bool = False, label: str = "train",
          batch_hook: Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict:
    """Train `model` in place from `start_iteration` to the end of the schedule; return the summary.

    Writes into `out_dir`: checkpoint.safetensors (each epoch and at the end, with optimizer state),
    rewind.safetensors (the weights after `snapshot_at` iterations; rewind-optimizer.safetensors has
    the optimizer state then), metrics.jsonl and summary.json. `optimizer_state` starts the optimizer
    from such a saved state instead of fresh (rewinding the optimizer along with the weights).
    `batch_hook(iteration, x, y)` may replace each training batch after augmentation (e.g. mix in
    extra examples); it must be a pure function of its arguments so that resuming stays exact.
    A finished run returns its stored summary and final weights; an interrupted one resumes.
    """
    out_dir = Path(out_dir)
    started_on = machine.describe()  # threads and load at the start: what the timings depend on
    rank, world = distributed.world()
    distributed.check_batch_size(cfg.batch_size)
    quiet = quiet or rank != 0  # one progress bar per job
    schedule = Schedule.of(cfg, len(data.train_y))
    if not 0 <= start_iteration < schedule.total:
        raise TicketlabError(f"start iteration {start_iteration} is outside the training length {schedule.total}; "
                             "choose a rewind step shorter than --steps")
    device = training_device(cfg)
    model.to(device)
    if mask is not None:
        mask.check_matches(model)
        mask.apply_(model)
    optimizer = build_optimizer(model, cfg)
    augment = data.augment if cfg.augment == "auto" else cfg.augment

    state = {"iteration": start_iteration, "metrics": [], "loss_sum": 0.0, "correct": 0, "seen": 0,
             "wall_time": 0.0, "train_examples": 0, "eval_examples": 0}
    checkpoint_path = out_dir / CHECKPOINT
    if checkpoint_path.exists():
        state = _load_checkpoint(checkpoint_path, model, optimizer)
        if mask is not None:
            mask.apply_(model)
    elif optimizer_state is not None:
        _load_optimizer_state(Path(optimizer_state), optimizer)
    if (out_dir / "summary.json").exists() and state["iteration"] == schedule.total:
        return read_json(out_dir / "summary.json")
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)  # 4-d (conv) weights only; back to contiguous at the end

    # Inputs as stored (8-bit pixels stay 8-bit on the device too), standardized a batch at a time.
    splits = {name: (data.stored(name).to(device), getattr(data, f"{name}_y").to(device))
              for name in ("train", "val", "test")}
    train_x, train_y = splits["train"]

    # Each rank counts its own slice here; `fold` adds the sums over ranks into `state` before the
    # counters are recorded or checkpointed, so both describe the global batches. The loss and accuracy
    # counters live on the device (one process: continuing the state's sums, so the float64 additions
    # happen in the same order as ever) and are read only here.
    pending = dict.fromkeys(COUNTERS, 0)
    counts = state if world == 1 else pending
    # What a person watching sees (a bar, or a line every N seconds in a log) and the scalars for
    # TensorBoard or CSV; only rank 0 shows or writes event files.
    reporter = progress.Reporter(label, schedule.total, state["iteration"], quiet=quiet)
    scalars = progress.ScalarLog(cfg.log, out_dir) if cfg.log != "none" else None
    counters = DeviceCounters(device, state["loss_sum"], state["correct"]) if world == 1 else DeviceCounters(device)
    clock = StepClock(device, state.get("step_time", 0.0))

    def fold() -> None:
        counts["loss_sum"], counts["correct"] = counters.read()
        state["step_time"] = clock.read()
        if world > 1:
            counters.reset()
            for key, total in zip(COUNTERS, distributed.all_reduce_sum([float(pending[k]) for k in COUNTERS])):
                state[key] += total if key == "loss_sum" else int(total)
                pending[key] = 0

    def record(iteration: int, lr: float) -> None:
        fold()
        entry = {"iteration": iteration, "epoch": iteration / schedule.iterations_per_epoch, "lr": lr,
                 "train_loss": state["loss_sum"] / state["seen"] if state["seen"] else None,
                 "train_accuracy": state["correct"] / state["seen"] if state["seen"] else None}
        for split in ("val", "test"):
            loss, acc = evaluate(model, *splits[split], data.standardize)
            entry[f"{split}_loss"], entry[f"{split}_accuracy"] = loss, acc
            state["eval_examples"] += len(splits[split][1])
        state["metrics"].append(entry)
        reporter.evaluated(entry["val_accuracy"])
        if scalars is not None:
            scalars.add(entry)
        state["loss_sum"], state["correct"], state["seen"] = 0.0, 0, 0
        counters.reset()

    def snapshot() -> None:
        write_safetensors(out_dir / REWIND, model.state_dict())
        _save_checkpoint(out_dir / REWIND_OPTIMIZER, model, optimizer, {})

    def checkpoint() -> None:
        fold()
        if step.scaler is not None:  # fp16's loss scale resumes where it was
            state["grad_scaler"] = step.scaler.state_dict()
        # The metrics first, the checkpoint last: a run killed between the two resumes from the previous
        # checkpoint and rewrites both. (The other order lost the final records for good: a run killed
        # after its final checkpoint resumes with nothing left to train and never rewrote metrics.jsonl.)
        write_jsonl(out_dir / "metrics.jsonl", state["metrics"])
        if scalars is not None:
            scalars.save(state["metrics"])
        _save_checkpoint(checkpoint_path, model, optimizer, state)

    started = time.perf_counter()
    first = state["iteration"]
    if first == start_iteration and not state["metrics"]:
        if snapshot_at == first:
            snapshot()
        record(first, schedule.learning_rate(first))
    model.train()
    forward = model if world == 1 else distributed.data_parallel(model, device)
    if cfg.compile:
        forward = torch.compile(forward)
    step = TrainStep(model, forward, optimizer, mask, cfg, device, counters)
    if step.scaler is not None and "grad_scaler" in state:
        step.scaler.load_state_dict(state["grad_scaler"])
    batches = TrainingBatches(train_x, train_y, cfg.batch_size, schedule.iterations_per_epoch, data_seed, augment,
                              data.standardize)

    def running() -> tuple[float | None, float | None]:
        """The training loss and accuracy since the last evaluation (read from the device: only when shown)."""
        loss_sum, correct = counters.read()
        seen = counts["seen"]
        return (loss_sum / seen, correct / seen) if seen else (None, None)
    for iteration in range(first, schedule.total):
        x, y = batches.at(iteration)
        if batch_hook is not None:
            x, y = batch_hook(iteration, x, y)
        global_size = len(y)
        if world > 1:
            x, y = distributed.shard(x), distributed.shard(y)

        lr = schedule.learning_rate(iteration)
        set_learning_rate(optimizer, lr)
        # Time spent in optimization steps alone (no evaluation, no checkpoints): what a smaller network saves.
        clock.start()
        step(x, y, global_size)
        clock.stop()
        counts["seen"] += len(y)
        counts["train_examples"] += len(y)
        done = iteration + 1
        state["iteration"] = done
        if snapshot_at == done:
            snapshot()
        if done % schedule.eval_every == 0 or done == schedule.total:
            record(done, lr)
        if done % schedule.iterations_per_epoch == 0 or done == schedule.total:
            state["wall_time"] += time.perf_counter() - started
            started = time.perf_counter()
            checkpoint()
        reporter.advance(done, running, final=done == schedule.total)
    reporter.close()
    if scalars is not None:
        scalars.close()
    del forward  # drops DDP's gradient hooks: later uses of the model (scoring, analysis) are local
    if world > 1:
        distributed.all_equal_hash(f"{label}: trained weights", distributed.tensor_bytes(model.state_dict()))

    summary = summarize(state["metrics"])
    # Training accuracy at the end, on a fixed sample (the first examples of the shuffled training split)
    # so that it costs a fraction of an epoch on large sets.
    sample = slice(0, TRAIN_EVAL_SAMPLE)
    summary["final_train_loss"], summary["final_train_accuracy"] = evaluate(model, train_x[sample], train_y[sample],
                                                                                    data.standardize)
    summary.update(iterations=schedule.total, start_iteration=start_iteration,
                   wall_time_seconds=round(state["wall_time"], 3), step_time_seconds=round(state.get("step_time", 0.0), 3),
                   train_examples=state["train_examples"], eval_examples=state["eval_examples"], machine=started_on)
    write_json(out_dir / "summary.json", summary)
    return summary


def summarize(metrics: list[dict]) -> dict:
    last = metrics[-1]
    best = early_stop(metrics)
    return {
        "test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"],
        "val_accuracy": last["val_accuracy"], "train_accuracy": last["train_accuracy"],
        "early_stop_iteration": best["iteration"] if best else None,
        "early_stop_test_accuracy": best["test_accuracy"] if best else None,
        "early_stop_val_loss": best["val_loss"] if best else None,
    }


def load_final_weights(out_dir: str | Path, model: nn.Module) -> None:
    """Load the weights a finished training left in `out_dir` into `model`."""
    _, tensors = _read_checkpoint(Path(out_dir) / CHECKPOINT)
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})


# Checkpoints: model and optimizer tensors in safetensors, everything else as JSON metadata.
def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for index, param_state in opt["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {"state": state, "param_groups": opt["param_groups"], "optim_scalars": scalars}
    write_safetensors(path, tensors, {"trainer": json.dumps(meta)})


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    tensors, metadata = read_safetensors(path)
    try:
        meta = json.loads(metadata["trainer"])
        if not isinstance(meta, dict):
            raise ValueError("metadata is not an object")
        return meta, tensors
    except (KeyError, ValueError) as exc:
        raise _damaged(path, exc) from None


def _damaged(path: Path, exc: BaseException) -> TicketlabError:
    """A checkpoint that cannot be trusted: say how to recover."""
    reason = " ".join(str(exc).split())[:120] or type(exc).__name__
    return TicketlabError(f"checkpoint {path} is damaged ({reason}); delete it to restart this training")


def _load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    meta, tensors = _read_checkpoint(path)
    try:
        model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
        _restore_optimizer(meta, tensors, optimizer)
        state = meta["state"]
        if not isinstance(state, dict) or not isinstance(state.get("iteration"), int):
            raise ValueError("no training state")
        return state
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise _damaged(path, exc) from None


def _load_optimizer_state(path: Path, optimizer: torch.optim.Optimizer) -> None:
    _restore_optimizer(*_read_checkpoint(path), optimizer)


def _restore_optimizer(meta: dict, tensors: dict, optimizer: torch.optim.Optimizer) -> None:
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            opt_state.setdefault(int(index), {})[name] = value
    for index, values in meta["optim_scalars"].items():
        opt_state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
