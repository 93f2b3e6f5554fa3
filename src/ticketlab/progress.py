"""Progress of long work and the lines it logs, for a person at a terminal and for a batch log alike.

On a terminal, each training shows a tqdm bar with its running loss and accuracy; replicate seeds in
parallel get one bar each (one line per seed) under an overall bar of finished seeds with its ETA.
Without a terminal (a batch log, a pipe), each training prints a line every `every` seconds (30 by
default, `--progress-every`) with its label, iteration, loss, accuracy, elapsed time and ETA, and the
overall line as each seed finishes. Parallel seed workers draw nothing themselves: they send their
progress and log lines to the parent process, which owns the terminal, so lines never run together
and bars never fight. Log lines are written whole, one `write` each. Under torchrun only rank 0 prints.

`ScalarLog` writes the evaluation records (the scalars of metrics.jsonl) for TensorBoard (`tb/` event
files, through the `tensorboard` package, extra `ticketlab[tensorboard]`) or as `metrics.csv`.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from ticketlab import distributed
from ticketlab.config import SCALAR_LOGS
from ticketlab.errors import TicketlabError, missing_extra
from ticketlab.files import write_bytes

DEFAULT_EVERY = 30.0  # seconds between progress lines without a terminal
BAR_REFRESH = 0.5  # seconds between a worker's bar updates sent to the parent (and between local bar redraws)
TENSORBOARD_DIR = "tb"
METRICS_CSV = "metrics.csv"

# This process's settings and where its progress goes. A seed worker gets the parent's settings and a
# channel to it when it starts (`worker_init`); the parent's display draws what the workers send.
_settings = {"every": DEFAULT_EVERY}
_channel = None  # in a seed worker: the queue to the parent's display
_display: Display | None = None  # while seeds run in this process: the display their trainings report to
_seed: int | None = None  # the seed this process works on now (names its bar)


def configure(every: float | None = None) -> None:
    """Seconds between progress lines without a terminal (None keeps the current setting)."""
    if every is not None:
        check_every(every)
        _settings["every"] = float(every)


def check_every(every) -> None:
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every) or every <= 0:
        raise TicketlabError(f"--progress-every must be a positive number of seconds, got {every!r}")


def settings() -> dict:
    return dict(_settings)


def printing() -> bool:
    """Whether this process prints: not a rank other than 0 of a torchrun job (which knows its rank from
    the environment before the process group exists)."""
    return distributed.is_main() and os.environ.get("RANK", "0") == "0"


def write_line(text: str) -> None:
    """One log line on stderr, whole: from a seed worker through the parent, above any progress bars."""
    if not printing():
        return
    if _channel is not None:
        _channel.put(("line", None, text))
    elif _display is not None:
        _display.line(text)
    else:
        _write_stderr(text)


def _write_stderr(text: str) -> None:
    """`text` and its newline in one write, so that lines of several processes never run together."""
    data = (text.rstrip("\n") + "\n").encode("utf-8", "replace")
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # a captured or replaced stderr
        sys.stderr.write(data.decode("utf-8"))
        sys.stderr.flush()
        return
    sys.stderr.flush()
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _metrics_text(loss: float | None, accuracy: float | None, val_accuracy: float | None) -> str:
    parts = []
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if accuracy is not None:
        parts.append(f"accuracy {accuracy:.4f}")
    if val_accuracy is not None:
        parts.append(f"val accuracy {val_accuracy:.4f}")
    return ", ".join(parts)


class Display:
    """Draws the trainings of one process (and those its seed workers send): bars on a terminal, else a
    line per training every `every` seconds. Keys name trainings (a seed, or a label when no seed runs)."""

    def __init__(self, terminal: bool, every: float, seeds: list[int] | None = None, parallel: bool = False):
        self.terminal, self.every = terminal, every
        first = 1 if seeds and len(seeds) > 1 else 0  # below the overall bar, when there is one
        # Seeds running at once get a line each; seeds run one after another share one.
        self.positions = {seed: first + (i if parallel else 0) for i, seed in enumerate(seeds)} if seeds else {}
        self.trainings: dict = {}
        self.lock = threading.Lock()
        self.overall = None
        if seeds and len(seeds) > 1:
            self.overall = {"done": 0, "total": len(seeds), "started": time.monotonic(), "bar": None}
            if terminal:
                self.overall["bar"] = tqdm(total=len(seeds), desc="seeds finished", position=0, leave=False,
                                           dynamic_ncols=True, file=sys.stderr)

    def handle(self, event: tuple) -> None:
        kind, key, payload = event
        with self.lock:
            if kind == "open":
                self._open(key, *payload)
            elif kind == "update":
                self._update(key, *payload)
            elif kind == "close":
                self._close(key)
            elif kind == "line":
                self._line(payload)

    def line(self, text: str) -> None:
        self.handle(("line", None, text))

    def _open(self, key, label: str, total: int, initial: int) -> None:
        self._close(key)
        training = {"label": label, "total": total, "initial": initial, "done": initial,
                    "started": time.monotonic(), "printed": time.monotonic(), "bar": None}
        if self.terminal:
            training["bar"] = tqdm(total=total, initial=initial, desc=label, position=self.positions.get(key, 0),
                                   leave=False, dynamic_ncols=True, file=sys.stderr)
        self.trainings[key] = training

    def _update(self, key, done: int, loss, accuracy, val_accuracy) -> None:
        training = self.trainings.get(key)
        if training is None:
            return
        training["done"] = done
        if training["bar"] is not None:
            bar = training["bar"]
            bar.update(done - bar.n)
            text = _metrics_text(loss, accuracy, val_accuracy)
            if text:
                bar.set_postfix_str(text, refresh=False)
            bar.refresh()
            return
        now = time.monotonic()
        if now - training["printed"] < self.every:
            return
        training["printed"] = now
        elapsed = now - training["started"]
        progressed = done - training["initial"]
        eta = _duration(elapsed / progressed * (training["total"] - done)) if progressed > 0 else "unknown"
        metrics = _metrics_text(loss, accuracy, val_accuracy)
        _write_stderr(f"{training['label']}: iteration {done}/{training['total']} "
                      f"({100 * done / training['total']:.0f}%){', ' + metrics if metrics else ''}, "
                      f"{_duration(elapsed)} elapsed, ETA {eta}")

    def _close(self, key) -> None:
        training = self.trainings.pop(key, None)
        if training is not None and training["bar"] is not None:
            training["bar"].close()

    def _line(self, text: str) -> None:
        if self.terminal and (self.trainings or self.overall):
            tqdm.write(text, file=sys.stderr)  # above the bars, which are drawn again below it
        else:
            _write_stderr(text)

    def seed_finished(self) -> None:
        with self.lock:
            overall = self.overall
            if overall is None:
                return
            overall["done"] += 1
            elapsed = time.monotonic() - overall["started"]
            if overall["bar"] is not None:
                overall["bar"].update(1)
                return
            left = overall["total"] - overall["done"]
            eta = f", ETA {_duration(elapsed / overall['done'] * left)}" if left else ""
            _write_stderr(f"overall: {overall['done']}/{overall['total']} seeds finished, "
                          f"{_duration(elapsed)} elapsed{eta}")

    def close(self) -> None:
        with self.lock:
            for key in list(self.trainings):
                self._close(key)
            if self.overall is not None and self.overall["bar"] is not None:
                self.overall["bar"].close()


class Reporter:
    """What one training reports: `advance` after each step (cheap: it shows at most every BAR_REFRESH
    seconds, and only then asks `metrics()` for the running loss and accuracy), `evaluated` after each
    evaluation, `close` at the end. Silent when `quiet` or on a rank other than 0."""

    def __init__(self, label: str, total: int, initial: int = 0, quiet: bool = False):
        self.active = not quiet and printing()
        self.val_accuracy = None
        self.last = (None, None)
        self.next_show = 0.0
        if not self.active:
            return
        self.key = _seed if _seed is not None else label
        label = f"seed {_seed} {label}" if _seed is not None else label
        self.own_display = None
        if _channel is None and _display is None:
            self.own_display = Display(_is_terminal(), _settings["every"])
        self._send("open", (label, total, initial))
        self.next_show = time.monotonic() + min(BAR_REFRESH, _settings["every"])

    def _send(self, kind: str, payload) -> None:
        event = (kind, self.key, payload)
        if _channel is not None:
            _channel.put(event)
        else:
            (self.own_display or _display).handle(event)

    def advance(self, done: int, metrics: Callable[[], tuple[float | None, float | None]], final: bool = False) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if now < self.next_show and not final:
            return
        self.next_show = now + min(BAR_REFRESH, _settings["every"])
        loss, accuracy = metrics()
        if loss is None:  # just after an evaluation nothing has been counted yet: show the last values
            loss, accuracy = self.last
        self.last = (loss, accuracy)
        self._send("update", (done, loss, accuracy, self.val_accuracy))

    def evaluated(self, val_accuracy: float | None) -> None:
        self.val_accuracy = val_accuracy

    def close(self) -> None:
        if not self.active:
            return
        self.active = False
        self._send("close", None)
        if self.own_display is not None:
            self.own_display.close()


# ---- replicate seeds ------------------------------------------------------------------------------

def worker_init(channel, parent_settings: dict) -> None:
    """In a seed worker process: the parent's settings, and its display as where progress goes."""
    global _channel
    _settings.update(parent_settings)
    _channel = channel


def for_seed(function, seed: int, *args):
    """function(seed, *args) with this process's progress named after `seed`."""
    global _seed
    previous, _seed = _seed, seed
    try:
        return function(seed, *args)
    finally:
        _seed = previous


@contextmanager
def seed_display(seeds: list[int], parallel: bool):
    """While the seeds of one job run: this process's display (one bar per seed and an overall one), and,
    for `parallel` workers, the channel they report through (yielded; None when the seeds run here).
    Nested jobs (a seed worker's own seeds) report where their process already does."""
    global _display
    if _channel is not None or _display is not None or not printing():
        yield None
        return
    _display = Display(_is_terminal(), _settings["every"], seeds, parallel)
    channel, listener = None, None
    if parallel:
        channel = multiprocessing.get_context("spawn").Queue()
        listener = threading.Thread(target=_listen, args=(channel, _display), daemon=True)
        listener.start()
    try:
        yield channel
    finally:
        if channel is not None:
            channel.put(None)
            listener.join(timeout=5)
            channel.close()
        _display.close()
        _display = None


def seed_finished() -> None:
    if _display is not None:
        _display.seed_finished()


def _listen(channel, display: Display) -> None:
    while True:
        try:
            event = channel.get()
        except (EOFError, OSError, queue.Empty):
            return
        if event is None:
            return
        display.handle(event)


# ---- scalars for TensorBoard or CSV ---------------------------------------------------------------

class ScalarLog:
    """The evaluation records of one training as TensorBoard scalars (<out>/tb/) or <out>/metrics.csv.

    CSV holds every record so far and is rewritten with metrics.jsonl (so a resumed run's file is whole);
    TensorBoard gets each record as it is made (a run resumed from a checkpoint may add a record again at
    the same step, which TensorBoard shows as one point). Only rank 0 writes event files."""

    def __init__(self, kind: str, out_dir: Path):
        if kind not in SCALAR_LOGS:
            raise TicketlabError(f"--log must be one of {', '.join(SCALAR_LOGS)}, got {kind!r}")
        self.kind, self.out_dir = kind, Path(out_dir)
        self.writer = None

    def add(self, record: dict) -> None:
        if self.kind != "tensorboard" or not distributed.is_main():
            return
        if self.writer is None:
            self.writer = _summary_writer(self.out_dir / TENSORBOARD_DIR)
        step = int(record["iteration"])
        for name, value in record.items():
            if name != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(_tag(name), value, step)

    def save(self, records: list[dict]) -> None:
        """With each checkpoint: CSV rewritten whole, TensorBoard flushed to disk."""
        if self.kind == "csv":
            write_bytes(self.out_dir / METRICS_CSV, metrics_csv(records))
        elif self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tag(name: str) -> str:
    """TensorBoard groups `val_accuracy` as `val/accuracy`, beside `test/accuracy` and `train/accuracy`."""
    split, _, metric = name.partition("_")
    return f"{split}/{metric}" if split in ("train", "val", "test") and metric else name


def metrics_csv(records: list[dict]) -> bytes:
    """The records as CSV: one column per key in the order first seen, empty where a record has none."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return out.getvalue().encode()


def _summary_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise missing_extra("--log tensorboard needs the tensorboard package", "tensorboard") from None
    return SummaryWriter(log_dir=str(folder))
