"""IMP and LTR as registered mask-finding methods (pai/registry.py), with the sanity check of their own.

`sanity --method imp` (or `ltr`, rewinding to its `--rewind-step`) runs an IMP run at 20% per level whose
last level lands exactly on the checked density (or follows `--imp-schedule`, which must contain it). The
ticket is that level; its shuffle and reinit ablations are the level's controls; its score is the
magnitude of the previous level's trained weights, so the inverted ticket keeps, among the weights alive
before the last pruning step, the lowest-magnitude ones (docs/methods.md, Sanity checks).
IMP and LTR find their masks by a run of their own, so `prune --method` does not take them.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from ticketlab.config import PruneConfig, density_schedule
from ticketlab.errors import TicketlabError
from ticketlab.files import read_safetensors
from ticketlab.lth.controls import train_control
from ticketlab.lth.imp import ImpSetup, imp_levels_keep_weights
from ticketlab.lth.jobs import imp_seed
from ticketlab.models import model_from_config
from ticketlab.pai.registry import MaskMethod, SanityProcedure, register
from ticketlab.pruning import keep_top_k
from ticketlab.runs import open_run, run_dir_for
from ticketlab.runtime import TICKET, checked_data, load_data, run_seeds, train_ticket_file
from ticketlab.ticket import load_ticket
from ticketlab.trainer import REWIND, load_final_weights

COST = "the training examples and wall time of all earlier levels (level 0 is the dense training)"


def imp_schedule(density: float, schedule: str | None) -> str:
    """The IMP run's density schedule: the one given (it must reach `density`), or 20% per level down to
    `density`, the last level landing on it exactly."""
    if schedule:
        densities = density_schedule(PruneConfig(schedule=schedule))
        if not any(math.isclose(d, density, rel_tol=1e-9) for d in densities):
            raise TicketlabError(f"--imp-schedule {schedule} does not contain --density {density}; add it")
        return schedule
    if not 0 < density < 1:
        raise TicketlabError("--density must be below 1 for an IMP sanity check")
    levels = []
    while 0.8 ** (len(levels) + 1) > density * 1.0001:
        levels.append(0.8 ** (len(levels) + 1))
    return ",".join(f"{d:.6g}" for d in levels + [density])


def sanity_prune_config(configs: dict, schedule: str | None, rewinds: bool) -> PruneConfig:
    """The checked IMP run's PruneConfig: LTR rewinds to the given step (it needs one), IMP to θ₀."""
    pai = configs["pai"]
    if rewinds and pai.rewind_step in ("0it", "0ep", "0"):
        raise TicketlabError(f"--method {pai.method} needs a rewind step, e.g. --rewind-step 500it (imp resets to θ₀)")
    return PruneConfig(rewind_step=pai.rewind_step if rewinds else "0it", schedule=imp_schedule(pai.density, schedule))


def check_imp_sanity(configs: dict, schedule: str | None, data=None) -> None:
    """The data fits the recipe and rewind step, and no level of the IMP run empties a layer group."""
    pai = configs["pai"]
    data, model = checked_data(configs, {"--rewind-step": pai.rewind_step}, data=data)
    imp_levels_keep_weights(PruneConfig(schedule=imp_schedule(pai.density, schedule)), model, configs["model"].model)


def run_imp_sanity(configs: dict, seeds: list[int], runs_dir: str, quiet: bool, workers: int, schedule: str | None,
                   *, rewinds: bool) -> tuple[dict, Path]:
    prune = sanity_prune_config(configs, schedule, rewinds)
    imp_configs = {k: configs[k] for k in ("data", "model", "train")} | {"prune": prune}
    open_run(runs_dir, "imp", imp_configs)
    per_seed = run_seeds(imp_sanity_seed, seeds, workers, {**configs, "prune": prune}, runs_dir, quiet)
    return per_seed, run_dir_for(runs_dir, "imp", imp_configs)


def imp_sanity_seed(seed: int, configs: dict, runs_dir: str, quiet: bool) -> dict:
    imp_configs = {k: configs[k] for k in ("data", "model", "train", "prune")}
    result = imp_seed(seed, "imp", imp_configs, runs_dir, quiet, ())
    # The level whose density is the checked one (the schedule contains it).
    level = min(result["levels"], key=lambda r: abs(r["density"] - configs["pai"].density))
    level_dir = Path(level["ticket"]).parent
    seed_dir = level_dir.parent
    data = load_data(configs)
    setup = ImpSetup(data, configs["data"], configs["model"], configs["train"], configs["prune"], seed, quiet)
    ticket = load_ticket(level["ticket"])
    out = {"ticket": level["test_accuracy"], "density": level["density"]}
    for ablation, control in (("shuffle-layerwise", "shuffle-layerwise"), ("reinit", "random-reinit")):
        out[ablation] = train_control(control, setup, seed_dir, level["level"], ticket.mask)["test_accuracy"]
    # Inversion by IMP's own score: lowest |θ_T| of the previous level among the weights it kept.
    previous = seed_dir / f"level-{level['level'] - 1}"
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=0)
    load_final_weights(previous, model)
    alive = load_ticket(previous / TICKET).mask
    params = dict(model.named_parameters())
    inverted = keep_top_k({n: -params[n].detach().abs() for n in alive.names()}, alive, ticket.mask.num_kept())
    theta_k = read_safetensors(seed_dir / "level-0" / REWIND)[0]
    out["invert"] = train_ticket_file(level_dir / TICKET, level_dir / "ablation-invert", data, quiet, mask=inverted,
                                      weights=theta_k, label=f"seed {seed} invert")["test_accuracy"]
    return out


def _sanity(rewinds: bool) -> SanityProcedure:
    return SanityProcedure(check=check_imp_sanity, run=functools.partial(run_imp_sanity, rewinds=rewinds))


IMP = register(MaskMethod("imp", "lth", "IMP: iterative magnitude pruning, survivors reset to θ₀ "
                          "(Frankle & Carbin 2019)", "largest", COST, sanity=_sanity(rewinds=False)))
LTR = register(MaskMethod("ltr", "lth", "LTR: iterative magnitude pruning, survivors rewound to θ_k, k > 0 "
                          "(Frankle et al. 2019, 2020)", "largest", COST, sanity=_sanity(rewinds=True)))
