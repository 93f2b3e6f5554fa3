"""Experiment configurations as dataclasses: the single schema for CLI flags, config.json and run identity.

A run's identity is a short hash of the fields whose values differ from their defaults, so adding a
new option with a default never renames existing runs. Fields marked `identity=False` (where data
lives, which device computes) do not change what is computed and are left out of the hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field

from ticketlab import checks
from ticketlab.errors import TicketlabError, missing_extra


def option(default, help: str, identity: bool | str = True, choices=None):
    """A config field with its CLI help text. identity: True (in the run's identity when not the default),
    False (never), or "always" (whenever not None: a default that changes what old runs computed renames
    them, e.g. GRASP_BATCHES)."""
    return field(default=default, metadata={"help": help, "identity": identity, "choices": choices})


# GraSP on BatchNorm nets depends on the batch its statistics come from. "halves": each scoring batch split
# in two halves, each normalized with its own statistics, as the reference code does (the default since it
# was introduced, so its field is always in the identity); "whole": the batch at once, as before.
GRASP_BATCHES = ("halves", "whole")
GRASP_METHODS = ("grasp", "grasp-abs")
GRASP_BATCHES_HELP = ("grasp and grasp-abs only: BatchNorm statistics over each half of a scoring batch (halves, the "
                      "reference code's two half-batches; the default) or over the whole batch (whole)")


def resolve_grasp_batches(value: str | None, uses_grasp: bool) -> str | None:
    """The GraSP batch mode a config records: halves by default when it scores with GraSP, None otherwise."""
    if not uses_grasp:
        return None
    checks.text("--grasp-batches", "halves" if value is None else value, GRASP_BATCHES)
    return "halves" if value is None else value


@dataclass
class DataConfig:
    dataset: str = option("fashion-mnist", "dataset name (see `ticketlab datasets`)")
    data_root: str | None = option(None, "folder holding datasets (default: $TICKETLAB_DATA_ROOT or ./data)", identity=False)
    val_size: int | None = option(None, "validation examples held out from the training set (default: the dataset's, 5000 for 60k-image sets)")
    train_subset: int = option(0, "use only the first N training examples (0 = all)")
    test_subset: int = option(0, "evaluate on only the first N test examples (0 = all); for quick runs, say so when reporting")
    pad: int = option(0, "zero-pad images by N pixels on every side (2 takes 28x28 Fashion-MNIST to 32x32)")
    resize: int = option(0, "resample images to N x N pixels, bilinear (28 takes the 8x8 digits to Fashion-MNIST's size); 0 = off")

    def __post_init__(self):
        checks.text("--dataset", self.dataset)
        checks.text("--data-root", self.data_root, optional=True)
        checks.integer("--val-size", self.val_size, 0, optional=True)
        checks.integer("--train-subset", self.train_subset, 0)
        checks.integer("--test-subset", self.test_subset, 0)
        checks.integer("--pad", self.pad, 0, checks.MAX_PIXELS)
        checks.integer("--resize", self.resize, 0, checks.MAX_PIXELS)


INITS = ("kaiming", "glorot")  # weight initialization schemes (models/initialization.py)
BIASES = ("zero", "uniform")


@dataclass
class ModelConfig:
    model: str = option("lenet_300_100", "model name (see `ticketlab models`), or package.module:factory for a "
                        "model of your own")
    kwargs: str = option("", "JSON keyword arguments of a package.module:factory model, e.g. '{\"width\": 64}'")
    prunable: str = option("", "comma-separated name patterns of the tensors to prune (default: every Linear and "
                           "Conv weight and attention projection), e.g. 'encoder.*,head.weight'")
    exclude: str = option("", "comma-separated name patterns of tensors never pruned, e.g. 'embed.*'")
    output: str = option("", "parameter name of the output layer's weight (default: the last Linear's)")
    init: str = option("kaiming", "weight initialization of Linear and Conv layers: kaiming = normal, fan_in, ReLU gain "
                       "(open_lth's); glorot = Glorot/Xavier normal (the LTH paper's)", choices=INITS)
    bias: str = option("zero", "initial biases: zero, or uniform = PyTorch's default U(-1/sqrt(fan_in), "
                       "1/sqrt(fan_in)) as open_lth keeps them", choices=BIASES)

    def __post_init__(self):
        checks.text("--model", self.model)
        checks.text("--init", self.init, INITS)
        checks.text("--bias", self.bias, BIASES)
        for flag, value in (("--kwargs", self.kwargs), ("--prunable", self.prunable), ("--exclude", self.exclude),
                            ("--output", self.output)):
            checks.text(flag, value)
        if self.kwargs:
            try:
                parsed = json.loads(self.kwargs)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise TicketlabError(f"--kwargs must be a JSON object such as '{{\"width\": 64}}'; got {self.kwargs!r}")

    def patterns(self) -> dict:
        """The include / exclude name patterns, as models.create_model takes them."""
        split = lambda text: [p.strip() for p in text.split(",") if p.strip()]  # noqa: E731
        return {k: v for k, v in (("include", split(self.prunable)), ("exclude", split(self.exclude))) if v}


PRECISIONS = ("fp32", "bf16", "fp16")
SCALAR_LOGS = ("none", "tensorboard", "csv")  # where the trainer also writes its evaluation records


@dataclass
class TrainConfig:
    optimizer: str = option("sgd", "optimizer", choices=("sgd", "adam"))
    lr: float = option(0.1, "learning rate")
    momentum: float = option(0.0, "SGD momentum")
    nesterov: bool = option(False, "Nesterov momentum (SGD)")
    weight_decay: float = option(0.0, "weight decay (L2)")
    batch_size: int = option(128, "minibatch size")
    steps: str = option("40ep", "training length: epochs (40ep) or iterations (500it)")
    milestones: str = option("", "comma-separated steps where the lr is multiplied by --gamma, e.g. 80ep,120ep")
    gamma: float = option(0.1, "lr factor at each milestone")
    warmup: str = option("0it", "linear lr warm-up length")
    eval_every: str = option("1ep", "evaluate validation and test sets this often")
    augment: str = option("auto", "data augmentation (auto = the dataset's default)", choices=("auto", "none", "flip-crop"))
    device: str = option("cpu", "device to train on (cpu, cuda, cuda:1, ...)", identity=False)
    threads: int | None = option(None, "torch threads per training process (default: the process's share of the "
                                 "cores, at most 4; 1 on a machine already busy); recorded in summary.json",
                                 identity=False)
    precision: str = option("fp32", "arithmetic of the training step: fp32, or autocast to bf16 (CPU and GPU) or fp16 "
                            "(GPU only, with loss scaling); weights and evaluation stay fp32", choices=PRECISIONS)
    channels_last: bool = option(False, "store conv nets' weights and batches channels-last (faster convolutions "
                                 "on GPUs)", identity=False)
    compile: bool = option(False, "compile the forward pass with torch.compile (a one-time cost, then faster steps)",
                           identity=False)
    deterministic: bool = option(False, "deterministic algorithms only (bit-identical reruns on the same GPU; a "
                                 "little slower): torch.use_deterministic_algorithms during training", identity=False)
    log: str = option("none", "also write the evaluation records (the scalars of metrics.jsonl) as TensorBoard event "
                      "files in <run>/tb/ (needs pip install 'ticketlab[tensorboard]') or as <run>/metrics.csv",
                      identity=False, choices=SCALAR_LOGS)

    def __post_init__(self):
        check_train(self)


@dataclass
class PruneConfig:
    levels: int = option(7, "pruning levels after the dense level 0 (density 0.8^7 = 21% at 20%)")
    prune_fraction: float = option(0.2, "fraction of the surviving weights pruned at each level")
    output_prune_fraction: float | None = option(None, "separate pruning rate for the output layer; 0 = never prune "
                                                 "the output layer, as open_lth does (default: pruned with the others)")
    conv_prune_fraction: float | None = option(None, "separate pruning rate for convolution weights (default: pruned with the others)")
    strategy: str = option("global", "rank weights over all layers at once, or within each layer", choices=("global", "layerwise"))
    rewind_step: str = option("0it", "rewind point k: 0it resets to initialization; e.g. 500it rewinds to the weights after k iterations")
    retrain: str = option("rewind", "how survivors are retrained at each level: rewind = weights back to θ_k (reset to "
                          "θ₀ when k = 0); lr-rewind = keep the level's final weights, replay the lr schedule from k; "
                          "finetune = keep the final weights, train at the final lr", choices=("rewind", "lr-rewind", "finetune"))
    rewind_optimizer: bool = option(False, "also rewind the optimizer state (momentum, Adam moments) to k; by default "
                                    "every level starts with a fresh optimizer")
    schedule: str = option("", "explicit density after each level, e.g. 0.5,0.2,0.05 (decreasing, in (0, 1)); replaces "
                           "--levels and --prune-fraction: each level prunes the share of survivors that brings the "
                           "total to its density (exactly, with the global strategy)")

    def __post_init__(self):
        check_prune(self)


@dataclass
class PaiConfig:
    method: str = option("snip", "pruning method (see `ticketlab methods`)")
    density: float = option(0.1, "fraction of prunable weights kept, in (0, 1]")
    rewind_step: str = option("0it", "score θ_k and train from iteration k; 0it = at initialization")
    score_batches: int = option(1, "minibatches of training data the scores are computed on")
    score_batch_size: int = option(128, "examples per scoring minibatch")
    iterations: int | None = option(None, "rounds of iterative methods (default: 10 for iter-snip and force, our "
                                    "choice: the FORCE authors' code runs 60; 100 for synflow)")
    min_per_layer: int = option(0, "keep at least this many weights in every layer (prevents layer collapse); 0 = off")
    grasp_batches: str | None = option(None, GRASP_BATCHES_HELP, identity="always", choices=GRASP_BATCHES)

    def __post_init__(self):
        checks.text("--method", self.method)
        self.grasp_batches = resolve_grasp_batches(self.grasp_batches, self.method in GRASP_METHODS)
        validate_density(self.density)
        checks.length(self.rewind_step, "rewind-step")
        checks.integer("--score-batches", self.score_batches, 1, MAX_SCORE_BATCHES)
        checks.integer("--score-batch-size", self.score_batch_size, 1)
        checks.integer("--iterations", self.iterations, 1, MAX_PAI_ITERATIONS, optional=True)
        checks.integer("--min-per-layer", self.min_per_layer, 0)


@dataclass
class LayerConfig:
    criterion: str = option("grasp", "block score: GraSP (the paper's best), SNIP, |θ| or random",
                            choices=("grasp", "snip", "magnitude", "random"))
    remove: int = option(1, "number p of residual blocks removed")
    aggregate: str = option("sum", "per-weight scores to one block score: sum, mean, or the sum divided by the mean "
                            "|sum| of the stage's removable blocks", choices=("sum", "mean", "stage-normalized"))
    at: str = option("init", "score θ₀ (init), or the trained dense network and rewind to θ₀ (after-training)",
                     choices=("init", "after-training"))
    min_per_stage: int | None = option(None, "blocks every stage keeps (default: 2 where a stage has 2 or more, else 1)")
    score_batches: int = option(1, "minibatches of training data the scores are computed on")
    score_batch_size: int = option(128, "examples per scoring minibatch")
    grasp_batches: str | None = option(None, GRASP_BATCHES_HELP, identity="always", choices=GRASP_BATCHES)

    def __post_init__(self):
        validate_layers(self)
        self.grasp_batches = resolve_grasp_batches(self.grasp_batches, self.criterion == "grasp")


FILTER_MATCHES = ("flops", "params", "filters")


@dataclass
class FilterConfig:
    criterion: str = option("snip", "filter score", choices=("snip", "grasp", "magnitude", "random"))
    target_filters: int = option(0, "convolution filters every seed's filter ticket keeps (one count for all seeds; "
                                 "unused when layer_run is set)")
    match: str = option("filters", "what each seed's filter ticket matches of the same seed's layer ticket: flops "
                        "(FLOPs per example), params (parameters) or filters (convolution filters), at most that much",
                        choices=FILTER_MATCHES)
    layer_run: str = option("", "name of the layer-ticket run matched seed by seed (set from --match-ticket)")
    layer_run_dir: str | None = option(None, "where that layer-ticket run lives", identity=False)
    grasp_batches: str | None = option(None, GRASP_BATCHES_HELP, identity="always", choices=GRASP_BATCHES)

    def __post_init__(self):
        checks.text("--criterion", self.criterion, ("snip", "grasp", "magnitude", "random"))
        checks.integer("--target-filters", self.target_filters, 0)
        checks.text("--match", self.match, FILTER_MATCHES)
        self.grasp_batches = resolve_grasp_batches(self.grasp_batches, self.criterion == "grasp")


MAX_THREADS = 1024  # torch threads: more than any machine here has cores, so a larger number is a typo
# Upper bounds that catch typos (see ticketlab.checks for the training-length and level limits).
MAX_SCORE_BATCHES = 10_000
MAX_PAI_ITERATIONS = 10_000


def validate_layers(cfg: LayerConfig) -> None:
    checks.text("--criterion", cfg.criterion, ("grasp", "snip", "magnitude", "random"))
    checks.text("--aggregate", cfg.aggregate, ("sum", "mean", "stage-normalized"))
    checks.text("--at", cfg.at, ("init", "after-training"))
    if isinstance(cfg.remove, bool) or not isinstance(cfg.remove, int) or cfg.remove < 0:
        raise TicketlabError(f"--remove must be 0 or more blocks, got {cfg.remove!r}")
    checks.integer("--min-per-stage", cfg.min_per_stage, 1, optional=True)
    checks.integer("--score-batches", cfg.score_batches, 1, MAX_SCORE_BATCHES)
    checks.integer("--score-batch-size", cfg.score_batch_size, 1)


def validate_density(density: float, flag: str = "--density") -> None:
    if not checks.is_real(density) or not 0 < density <= 1:
        raise TicketlabError(f"{flag} must be in (0, 1], got {density!r}")


def validate_pai(cfg: PaiConfig) -> None:
    PaiConfig.__post_init__(cfg)


def check_train(cfg: TrainConfig) -> None:
    """Every value of a training recipe on its own (the data-dependent checks are in
    ticketlab.checks.check_training_data, the device's availability in validate_train)."""
    checks.text("--optimizer", cfg.optimizer, ("sgd", "adam"))
    checks.positive("--lr", cfg.lr)
    checks.real("--momentum", cfg.momentum, lambda v: 0 <= v < 1, "in [0, 1)")
    checks.boolean("--nesterov", cfg.nesterov)
    if cfg.nesterov and (cfg.optimizer != "sgd" or cfg.momentum == 0):
        raise TicketlabError("--nesterov needs --optimizer sgd and a --momentum above 0")
    checks.non_negative("--weight-decay", cfg.weight_decay)
    checks.integer("--batch-size", cfg.batch_size, 1)
    checks.length(cfg.steps, "steps", positive_length=True)
    checks.text("--milestones", cfg.milestones)
    for spec in cfg.milestones.split(","):
        if spec.strip():
            checks.length(spec, "milestone")
    checks.positive("--gamma", cfg.gamma)
    checks.length(cfg.warmup, "warmup")
    checks.length(cfg.eval_every, "eval-every", positive_length=True)
    checks.text("--augment", cfg.augment, ("auto", "none", "flip-crop"))
    checks.text("--log", cfg.log, SCALAR_LOGS)
    checks.device_name(cfg.device)
    checks.integer("--threads", cfg.threads, 1, MAX_THREADS, optional=True)
    checks.text("--precision", cfg.precision, PRECISIONS)
    for flag in ("channels_last", "compile", "deterministic"):
        checks.boolean("--" + flag.replace("_", "-"), getattr(cfg, flag))


def validate_train(cfg: TrainConfig) -> None:
    """A recipe about to train here: its values, its device, and a precision that device can run."""
    check_train(cfg)
    checks.device_available(cfg.device)
    checks.precision_available(cfg.precision, cfg.device)
    if cfg.log == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise missing_extra("--log tensorboard needs the tensorboard package", "tensorboard")


def density_schedule(cfg: PruneConfig) -> list[float]:
    """The densities of an explicit --schedule ([] when levels prune a fixed fraction)."""
    if not isinstance(cfg.schedule, str):
        raise TicketlabError(f"--schedule must be text such as 0.5,0.2,0.05, got {cfg.schedule!r}")
    if not cfg.schedule.strip():
        return []
    try:
        densities = [float(d) for d in cfg.schedule.split(",")]
    except ValueError:
        raise TicketlabError(f"bad --schedule {cfg.schedule!r}: give densities such as 0.5,0.2,0.05") from None
    if not all(0 < d < 1 for d in densities) or any(b >= a for a, b in zip(densities, densities[1:])):
        raise TicketlabError(f"--schedule {cfg.schedule} must be strictly decreasing densities in (0, 1)")
    if len(densities) > checks.MAX_LEVELS:
        raise TicketlabError(f"--schedule has {len(densities)} levels, more than the limit of {checks.MAX_LEVELS}")
    return densities


def num_levels(cfg: PruneConfig) -> int:
    """Pruning levels after the dense level 0."""
    return len(density_schedule(cfg)) or cfg.levels


def check_prune(cfg: PruneConfig) -> None:
    """Every value of an IMP configuration (how many weights the levels keep depends on the model:
    ticketlab.lth.imp.imp_levels_keep_weights)."""
    schedule = density_schedule(cfg)
    if schedule and (cfg.output_prune_fraction is not None or cfg.conv_prune_fraction is not None):
        raise TicketlabError("--schedule sets one rate for every layer; drop --output-prune-fraction and "
                             "--conv-prune-fraction, or use --prune-fraction instead of --schedule")
    if isinstance(cfg.levels, bool) or not isinstance(cfg.levels, int) or cfg.levels < 0:
        raise TicketlabError(f"--levels must be 0 or more, got {cfg.levels!r}")
    if cfg.levels > checks.MAX_LEVELS:
        raise TicketlabError(f"--levels {cfg.levels} is more than the limit of {checks.MAX_LEVELS} pruning levels "
                             "(each one a full training); give fewer")
    for name in ("prune_fraction", "output_prune_fraction", "conv_prune_fraction"):
        value = getattr(cfg, name)
        if value is not None:  # the output layer may be left whole (0), the other rates must prune
            checks.fraction("--" + name.replace("_", "-"), value, low_open=name != "output_prune_fraction")
    checks.text("--strategy", cfg.strategy, ("global", "layerwise"))
    checks.length(cfg.rewind_step, "rewind-step")
    checks.text("--retrain", cfg.retrain, ("rewind", "lr-rewind", "finetune"))
    checks.boolean("--rewind-optimizer", cfg.rewind_optimizer)
    if cfg.rewind_optimizer and cfg.retrain != "rewind":
        raise TicketlabError("--rewind-optimizer goes with --retrain rewind; the other modes keep the final weights")


def validate_prune(cfg: PruneConfig) -> None:
    check_prune(cfg)


def identity_values(configs: dict[str, object]) -> dict[str, object]:
    """The non-default, identity-relevant values of named config sections, as 'section.field': value."""
    values = {}
    for section, cfg in configs.items():
        defaults = type(cfg)()
        for f in dataclasses.fields(cfg):
            if not f.metadata.get("identity", True):
                continue
            value = getattr(cfg, f.name)
            if f.metadata["identity"] == "always":  # in the identity whenever set, default or not
                if value is not None:
                    values[f"{section}.{f.name}"] = value
            elif value != getattr(defaults, f.name):
                values[f"{section}.{f.name}"] = value
    return values


def config_hash(kind: str, configs: dict[str, object]) -> str:
    """Short stable hash naming a run: the command kind plus its non-default values."""
    payload = json.dumps({"kind": kind, "values": identity_values(configs)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def to_dict(configs: dict[str, object]) -> dict[str, dict]:
    return {section: dataclasses.asdict(cfg) for section, cfg in configs.items()}


def derive_seed(seed: int, purpose: str) -> int:
    """Independent seeds for initialization, data order and pruning randomness, from one user seed."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:7], "little")
