"""Iterative magnitude pruning (LTH, and LTR with a rewind step), level by level, resumable.

Level 0 trains the dense network from θ₀ and keeps θ_k (the weights after k iterations; k = 0 is θ₀).
Level L prunes `prune_fraction` of the weights that survived level L-1 (or, with a density
`schedule`, the share that reaches the level's density), by magnitude of its final
weights, resets the survivors to θ_k and trains again from iteration k (schedule and data order
resume at k). The optimizer starts fresh at every level unless `rewind_optimizer` restores its
state at k too. Baselines: `lr-rewind` keeps the final weights and replays the lr schedule from k;
`finetune` keeps them and trains the same number of iterations at the schedule's final lr. Each level directory holds the trainer's
files and `ticket.safetensors` (mask, θ_k, trained weights); level 0 also keeps θ₀ in init.safetensors; a finished level is never recomputed,
and a half-finished one resumes from its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path


from ticketlab import checks, distributed
from ticketlab.config import DataConfig, ModelConfig, PruneConfig, TrainConfig, density_schedule, derive_seed, num_levels
from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.files import read_safetensors, write_safetensors
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture, model_from_config
from ticketlab.multitrain import Member, train_together
from ticketlab.provenance import Provenance
from ticketlab.pruning import magnitude_prune
from ticketlab.runtime import TICKET
from ticketlab.steps import to_iterations
from ticketlab.ticket import Ticket
from ticketlab.trainer import REWIND, REWIND_OPTIMIZER, Schedule, load_final_weights

INIT = "init.safetensors"


@dataclass
class ImpSetup:
    data: Dataset
    data_cfg: DataConfig
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    prune_cfg: PruneConfig
    seed: int
    quiet: bool = False


@dataclass
class Companion:
    """A training that runs beside a level's ticket with the level's recipe and start (a control): the member
    trained together with the ticket, and what to do with its summary once trained."""
    member: Member
    finish: Callable[[dict], None]


def rewind_iteration(setup: ImpSetup) -> int:
    schedule = Schedule.of(setup.train_cfg, len(setup.data.train_y))
    return to_iterations(setup.prune_cfg.rewind_step, schedule.iterations_per_epoch, "rewind-step")


def method_name(setup: ImpSetup) -> str:
    retrain = setup.prune_cfg.retrain
    if retrain == "rewind":
        return "imp" if rewind_iteration(setup) == 0 else "ltr"
    return retrain


def retrain_config(setup: ImpSetup) -> TrainConfig:
    """The recipe for levels after 0: the dense one, except fine-tuning runs at the final lr throughout."""
    if setup.prune_cfg.retrain != "finetune":
        return setup.train_cfg
    final = Schedule.of(setup.train_cfg, len(setup.data.train_y)).final_lr()
    return replace(setup.train_cfg, lr=final, milestones="", warmup="0it")


def ticket_provenance(setup: ImpSetup, method: str, level: int, summary: dict,
                      search_cost: dict | None = None) -> Provenance:
    """A level's (or a control's) provenance; the recipe recorded is the dense one, as IMP was given it."""
    return Provenance(dataset=setup.data_cfg.dataset, data_config=setup.data_cfg, train_config=setup.train_cfg,
                      method=method, level=level, seed=setup.seed, init_seed=derive_seed(setup.seed, "init"),
                      data_seed=derive_seed(setup.seed, "data"), rewind_step=rewind_iteration(setup),
                      retrain=setup.prune_cfg.retrain, metrics=summary, search_cost=search_cost)


def level_fraction(prune_cfg: PruneConfig, level: int, mask: Mask) -> float:
    """The share of the surviving weights level `level` prunes: fixed, or what reaches its scheduled density."""
    schedule = density_schedule(prune_cfg)
    if not schedule:
        return prune_cfg.prune_fraction
    target = round(schedule[level - 1] * mask.num_total())
    return 1 - target / mask.num_kept()


def run_imp(setup: ImpSetup, seed_dir: Path, on_level=None,
            companions: Callable[[int, Mask], list[Companion]] | None = None) -> list[dict]:
    """Run (or resume) every level; returns one record per level. `companions(level, mask)` gives trainings
    (controls) that train together with the level's ticket as one vectorized model; `on_level(level, mask,
    record)` runs after each level."""
    k = rewind_iteration(setup)
    init_seed, data_seed = derive_seed(setup.seed, "init"), derive_seed(setup.seed, "data")
    model = model_from_config(setup.model_cfg, setup.data.input_shape, setup.data.num_classes, seed=init_seed)
    architecture = model.architecture
    mask = Mask.ones(model)
    records = []
    previous_dir = None
    # Compute spent to find each level's mask: the trainings of all earlier levels.
    search_cost = {"train_examples": 0, "wall_time_seconds": 0.0}
    for level in range(num_levels(setup.prune_cfg) + 1):
        level_dir = seed_dir / f"level-{level}"
        if level == 0:
            start_state = None
            if not (level_dir / INIT).exists():
                write_safetensors(level_dir / INIT, model.state_dict())  # θ₀, kept for controls and analysis
        else:
            # Prune by the magnitudes the previous level ended with, then rewind the survivors to θ_k.
            load_final_weights(previous_dir, model)
            weights = dict(model.named_parameters())
            mask = magnitude_prune(mask, weights, level_fraction(setup.prune_cfg, level, mask), setup.prune_cfg.strategy,
                                   model.output_name, setup.prune_cfg.output_prune_fraction,
                                   setup.prune_cfg.conv_prune_fraction)
            # Data-parallel ranks must train the same ticket; a difference here would otherwise go unnoticed.
            distributed.all_equal_hash(f"mask level {level}", distributed.tensor_bytes(mask.packed()))
            if setup.prune_cfg.retrain == "rewind":
                start_state = read_safetensors(seed_dir / "level-0" / REWIND)[0]
            else:
                start_state = {name: value.clone() for name, value in model.state_dict().items()}
            model = model_from_architecture(architecture)
            model.load_state_dict(start_state)
        optimizer_state = (seed_dir / "level-0" / REWIND_OPTIMIZER
                           if level > 0 and setup.prune_cfg.rewind_optimizer else None)
        ticket_member = Member(model, level_dir, data_seed, mask, snapshot_at=k if level == 0 else None,
                               optimizer_state=optimizer_state, label=f"level {level}")
        beside = companions(level, mask) if companions is not None else []
        summary, *beside_summaries = train_together(
            [ticket_member, *(c.member for c in beside)], setup.data,
            setup.train_cfg if level == 0 else retrain_config(setup), start_iteration=0 if level == 0 else k,
            quiet=setup.quiet)
        for companion, companion_summary in zip(beside, beside_summaries):
            companion.finish(companion_summary)
        if start_state is None:
            start_state = read_safetensors(level_dir / REWIND)[0]
        ticket_path = level_dir / TICKET
        if not ticket_path.exists():
            init_state = {name: value * mask[name] if name in mask.tensors else value
                          for name, value in start_state.items()}
            Ticket(architecture, mask, init_state, model.state_dict(),
                   ticket_provenance(setup, method_name(setup), level, summary, dict(search_cost))).save(ticket_path)
        record = {"level": level, "density": mask.density(), "percent_remaining": 100 * mask.density(),
                  "search_cost": dict(search_cost),
                  "ticket": str(ticket_path), **summary}
        if on_level is not None:
            on_level(level, mask, record)
        records.append(record)
        previous_dir = level_dir
        search_cost["train_examples"] += summary["train_examples"]
        search_cost["wall_time_seconds"] += summary["wall_time_seconds"]
    return records


def imp_levels_keep_weights(prune, model, model_name: str) -> None:
    """Simulate IMP's counts level by level (as ticketlab.pruning prunes them) and refuse a level that
    would prune every weight of a layer group it ranks (the whole net with the global strategy)."""
    sizes = checks.prunable_sizes(model)
    output = getattr(model, "output_name", None)
    schedule = density_schedule(prune)
    total = sum(sizes.values())
    separate_output = prune.output_prune_fraction is not None and output in sizes
    rest = [n for n in sizes if not (separate_output and n == output)]
    families = [(rest, "fraction")]
    if prune.conv_prune_fraction is not None:
        # conv weights: tensors of more than two dimensions
        params = dict(model.named_parameters())
        convs = [n for n in rest if params[n].dim() > 2]
        families = [([n for n in rest if n not in convs], "fraction"), (convs, "conv")]
    groups = []
    for names, rate in families:
        if names:
            groups.extend([(names, rate)] if prune.strategy == "global" else [([n], rate) for n in names])
    if separate_output:
        groups.append(([output], "output"))
    alive = {tuple(names): sum(sizes[n] for n in names) for names, _ in groups}
    rates = {"fraction": prune.prune_fraction, "conv": prune.conv_prune_fraction, "output": prune.output_prune_fraction}
    for level in range(1, num_levels(prune) + 1):
        kept_total = sum(alive.values())
        if schedule:
            target = round(schedule[level - 1] * total)
            if target < 1:
                raise TicketlabError(f"--schedule level {level} (density {schedule[level - 1]:g}) keeps 0 of the "
                                     f"{total:,} prunable weights of {model_name}; give densities of at least "
                                     f"{0.5 / total:.3g}")
            level_rate = 1 - target / kept_total
        removed = 0
        for names, rate in groups:
            key = tuple(names)
            share = level_rate if schedule else rates[rate]
            cut = int(round(alive[key] * share))
            alive[key] -= cut
            removed += cut
            if alive[key] < 1:
                what = "every prunable weight" if len(groups) == 1 else f"every weight of {', '.join(names)}"
                how = "fewer --levels or a smaller --prune-fraction" if not schedule else "higher densities"
                raise TicketlabError(f"pruning level {level} would remove {what} of {model_name}; give {how}")
        if removed == 0:
            raise TicketlabError(f"pruning level {level} would remove no weight of {model_name} ({kept_total:,} left, "
                                 f"too few to prune a share of); give {'densities further apart' if schedule else 'fewer --levels'}")
