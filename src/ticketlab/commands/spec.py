"""What a command is: its config sections, a dataclass of its own options, and how it runs and renders.

A command's own options are a keyword-only dataclass deriving from `Options`; each field carries its
help text and how a front end offers it (`arg`: positional, choices, a bare flag, a file or folder
it writes). Options check themselves when constructed, as the configs do, so the command line and
sweeps refuse the same mistakes before any work starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from ticketlab import checks, progress, runs
from ticketlab.config import DataConfig, LayerConfig, ModelConfig, PaiConfig, PruneConfig, TrainConfig
from ticketlab.cts.config import CtsConfig
from ticketlab.lth.aggregate import parse_seeds
from ticketlab.supertickets.config import SuperConfig

# The config sections a command can take, each offered as one option per field.
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prune": PruneConfig, "pai": PaiConfig,
            "cts": CtsConfig, "layers": LayerConfig, "supertickets": SuperConfig}
MAX_WORKERS = 1024  # parallel processes: more than any machine here has cores, so a larger number is a typo

Log = Callable[[str], None]


def flag(name: str) -> str:
    """The option an option name is written as: `runs_dir` -> `--runs-dir`."""
    return "--" + name.replace("_", "-")


def arg(default=dataclasses.MISSING, help: str = "", *, choices=None, positional: bool = False, nargs=None,
        metavar=None, bare: bool = False, writes: str | None = None, label: str | None = None, rank: int = 0):
    """A field of a command's options. `bare`: a flag without a value (true when given); `writes`:
    "file" or "folder" the command writes there (checked writable up front; `label` names it in
    errors); `rank` orders the options shared by many commands after the command's own."""
    return field(default=default, metadata={"help": help, "choices": choices, "positional": positional,
                                            "nargs": nargs, "metavar": metavar, "bare": bare, "writes": writes,
                                            "label": label, "rank": rank})


@dataclass(kw_only=True)
class Options:
    """Base of every command's options: each class of the hierarchy checks its own fields in its
    `check`, base classes first; then choices, and that the files and folders written can be."""

    def __post_init__(self):
        for cls in reversed(type(self).__mro__):
            if "check" in vars(cls):
                vars(cls)["check"](self)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.metadata.get("choices"):
                checks.text(flag(f.name), value, f.metadata["choices"])
            if f.metadata.get("writes"):
                what = f.metadata.get("label") or f"{flag(f.name)} {f.metadata['writes']}"
                (checks.writable_dir if f.metadata["writes"] == "folder" else checks.writable_file)(value, what)


# ---- options many commands share ----------------------------------------------------------------

@dataclass(kw_only=True)
class Json(Options):
    json: bool = arg(False, "print exactly one JSON object with the results on stdout", bare=True, rank=5)


@dataclass(kw_only=True)
class Output(Json):
    quiet: bool = arg(False, "no progress bars or progress lines", bare=True, rank=6)
    progress_every: float = arg(progress.DEFAULT_EVERY, "seconds between progress lines (iteration, loss, accuracy, "
                                "ETA) when stderr is not a terminal, as in a batch log; a terminal shows bars", rank=7)

    def check(self):
        progress.check_every(self.progress_every)

    @property
    def silent(self) -> bool:
        """No progress bars: asked for, or the output is the JSON result."""
        return self.quiet or self.json


@dataclass(kw_only=True)
class Seed(Options):
    seed: int = arg(0, "seed for initialization, data order and pruning", rank=1)

    def check(self):
        checks.seed("--seed", self.seed)


@dataclass(kw_only=True)
class RunsDir(Options):
    runs_dir: str = arg("runs", "where run directories are created", writes="folder", label="runs directory", rank=2)


@dataclass(kw_only=True)
class Runs(Seed, RunsDir, Output):
    """A command that stores its work in run directories."""


@dataclass(kw_only=True)
class Workers(Options):
    workers: int | None = arg(None, "parallel processes for replicate seeds (default: one per seed up to the number "
                                    "of cores; threads are shared out among them)", rank=4)

    def check(self):
        checks.integer("--workers", self.workers, 1, MAX_WORKERS, optional=True)


@dataclass(kw_only=True)
class Replicates(Workers):
    seeds: str | None = arg(None, "replicate seeds, e.g. 0,1,2 (overrides --seed); results are aggregated as "
                                  "mean ± std", rank=3)

    def check(self):
        if self.seeds is not None:
            parse_seeds(self.seeds)


def seed_list(options: Options) -> list[int]:
    """--seeds when given, else --seed."""
    return parse_seeds(options.seeds) if options.seeds is not None else [options.seed]


# ---- commands -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Alias:
    """Another name for a section's field: an old spelling (hidden from help), or a bare flag that sets
    the field to `const`."""
    name: str
    section: str
    field: str
    const: object = None
    help: str | None = None


# Old spellings of the CTS options that now carry their section's prefix (--cts-lr, --cts-batch-size),
# kept so that existing scripts and grid files still work.
SECTION_ALIASES = {"cts": (Alias("search_lr", "cts", "lr"), Alias("search_batch_size", "cts", "batch_size"))}


def _success(result: dict) -> int:
    return 0


@dataclass(frozen=True, eq=False)
class Command:
    """One command. `run(configs, options, log)` does the work and returns the result dict (what --json
    prints); `render(result, options)` is its text. `sections` are the config sections offered, starting
    from `defaults[section]` (else the config's defaults) minus the `skip[section]` fields; an
    `overrides` section is offered as changes only (a dict of the fields given) to a recipe the
    command reads later, such as a ticket's. `status(result)` is the exit status."""
    name: str
    help: str
    description: str
    options: type[Options]
    run: Callable[[dict, Options, Log], dict]
    render: Callable[[dict, Options], str]
    sections: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)
    skip: dict = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    aliases: tuple[Alias, ...] = ()
    status: Callable[[dict], int] = _success

    def execute(self, configs: dict, options: Options, log: Log) -> dict:
        runs.on_work_start.clear()  # nothing an earlier command of this process announced is left over
        progress.configure(every=getattr(options, "progress_every", None))
        return self.run(configs, options, log)


def announce(recipe: TrainConfig, log: Log) -> None:
    """The training recipe in effect, logged once the command's work starts (its first run opened), so
    that a refused command says only its one error line."""
    values = ", ".join(f"{f.name} {getattr(recipe, f.name)}" for f in dataclasses.fields(TrainConfig)
                       if f.name != "device" and getattr(recipe, f.name) not in ("", None))
    runs.on_work_start[:] = [lambda: log(f"recipe: {values}")]
