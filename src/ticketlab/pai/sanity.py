"""Sanity checks for a pruning method (Frankle et al. 2021; Su et al. 2020).

The method's ticket and three ablations train with the same recipe from the same rewind step:
  shuffle-layerwise  each layer's mask permuted (same per-layer counts), weights θ_k
  reinit             the same mask, fresh weights from the init distribution
  invert             the lowest-scored weights by the method's own score, same count
An ablation *passes* when it loses more than two seed-standard-deviations (pooled over ticket and
ablation) of test accuracy; otherwise the method *fails* it: its mask is no better than that
ablation, e.g. it only chose layer-wise densities. With one seed no verdict is given.
For IMP/LTR the ticket is the level of an IMP run (20% per level, or a given density schedule) at the
checked density; its score is the magnitude of the previous level's trained weights: the inverted
ticket keeps, among the weights alive before the last pruning step, the lowest-magnitude ones.
"""

from __future__ import annotations

import math
from pathlib import Path


from ticketlab.config import PruneConfig, density_schedule, derive_seed
from ticketlab.errors import TicketlabError
from ticketlab.files import read_safetensors, write_json
from ticketlab.lth.aggregate import mean_std
from ticketlab.lth.controls import train_control
from ticketlab.lth.imp import ImpSetup, imp_levels_keep_weights
from ticketlab.lth.jobs import imp_seed
from ticketlab.models import model_from_config
from ticketlab.pai import PAI_METHODS
from ticketlab.pai.ablations import shuffle_layerwise
from ticketlab.pai.jobs import TICKET, check_method, check_pai_request, prune_seed, rewind_weights, train_ticket_file
from ticketlab.pruning import keep_top_k
from ticketlab.runs import open_run, run_dir_for
from ticketlab.runtime import checked_data, load_data, run_seeds
from ticketlab.ticket import load_ticket
from ticketlab.trainer import REWIND, load_final_weights

ABLATIONS = ("shuffle-layerwise", "reinit", "invert")
IMP_METHODS = ("imp", "ltr")


def verdict(ticket: list[float], ablation: list[float]) -> tuple[str, float | None]:
    if len(ticket) < 2 or len(ablation) < 2:
        return "no verdict (needs ≥ 2 seeds)", None
    pooled = math.sqrt((mean_std(ticket)[1] ** 2 + mean_std(ablation)[1] ** 2) / 2)
    loss = mean_std(ticket)[0] - mean_std(ablation)[0]
    return ("passes" if loss > 2 * pooled else "fails"), pooled


def _fresh_weights(configs, data, seed) -> dict:
    fresh = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=derive_seed(seed, "sanity-reinit"))
    return fresh.state_dict()


def pai_sanity_seed(seed: int, configs: dict, runs_dir: str, quiet: bool) -> dict:
    data = load_data(configs)
    path = prune_seed(seed, configs, data, runs_dir, quiet)
    seed_dir = path.parent
    results = {"ticket": train_ticket_file(path, seed_dir / "train", data, quiet, label=f"seed {seed} ticket")}
    ticket = load_ticket(path)
    theta_k, _, _ = rewind_weights(configs, data, seed, seed_dir, quiet)
    results["shuffle-layerwise"] = train_ticket_file(
        path, seed_dir / "ablation-shuffle-layerwise", data, quiet, mask=shuffle_layerwise(ticket.mask, derive_seed(seed, "sanity")),
        weights=theta_k, label=f"seed {seed} shuffle")
    results["reinit"] = train_ticket_file(path, seed_dir / "ablation-reinit", data, quiet,
                                          weights=_fresh_weights(configs, data, seed), label=f"seed {seed} reinit")
    method = configs["pai"].method
    if method == "cts" or PAI_METHODS[method].score_order is not None:
        inverted = prune_seed(seed, configs, data, runs_dir, quiet, invert=True)
        results["invert"] = train_ticket_file(inverted, inverted.parent / "train", data, quiet, label=f"seed {seed} invert")
    return {k: v["test_accuracy"] for k, v in results.items()} | {"density": ticket.mask.density()}


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


def run_sanity(configs: dict, seeds: list[int], runs_dir: str, quiet: bool, workers: int,
               schedule: str | None = None) -> dict:
    """`schedule`: the density schedule of the IMP run checked by --method imp/ltr (see imp_schedule)."""
    method = configs["pai"].method
    load_data(configs)
    if method in IMP_METHODS:
        pai = configs["pai"]
        if method == "ltr" and pai.rewind_step in ("0it", "0ep", "0"):
            raise TicketlabError("--method ltr needs a rewind step, e.g. --rewind-step 500it (imp resets to θ₀)")
        rewind = pai.rewind_step if method == "ltr" else "0it"
        prune = PruneConfig(rewind_step=rewind, schedule=imp_schedule(pai.density, schedule))
        imp_configs = {k: configs[k] for k in ("data", "model", "train")} | {"prune": prune}
        open_run(runs_dir, "imp", imp_configs)
        per_seed = run_seeds(imp_sanity_seed, seeds, workers, {**configs, "prune": prune}, runs_dir, quiet)
        run_dir = run_dir_for(runs_dir, "imp", imp_configs)
    else:
        check_method(method)
        open_run(runs_dir, "prune", configs)
        per_seed = run_seeds(pai_sanity_seed, seeds, workers, configs, runs_dir, quiet)
        run_dir = run_dir_for(runs_dir, "prune", configs)

    ticket_accs = [per_seed[s]["ticket"] for s in seeds]
    rows = [{"variant": "ticket", "test_accuracy": mean_std(ticket_accs)[0], "test_accuracy_std": mean_std(ticket_accs)[1],
             "delta": 0.0, "verdict": None}]
    for ablation in ABLATIONS:
        accs = [per_seed[s][ablation] for s in seeds if ablation in per_seed[s]]
        if not accs:
            rows.append({"variant": ablation, "test_accuracy": None, "test_accuracy_std": None, "delta": None,
                         "verdict": "not defined (the method has no scores)"})
            continue
        decision, pooled = verdict(ticket_accs, accs)
        mean, std = mean_std(accs)
        rows.append({"variant": ablation, "test_accuracy": mean, "test_accuracy_std": std,
                     "delta": mean - rows[0]["test_accuracy"], "verdict": decision, "pooled_std": pooled})
    result = {"method": method, "density": per_seed[seeds[0]]["density"], "seeds": seeds, "run_dir": str(run_dir),
              "rows": rows, "per_seed": {str(s): per_seed[s] for s in seeds}}
    write_json(Path(run_dir) / f"sanity-{'-'.join(map(str, seeds))}.json", result)
    return result


def sanity_table(result: dict) -> str:
    lines = [f"sanity checks of {result['method']} at density {result['density']:.4f} "
             f"({len(result['seeds'])} seeds)", f"{'variant':18s} {'test acc':>17s} {'delta':>8s}  verdict"]
    for row in result["rows"]:
        if row["test_accuracy"] is None:
            lines.append(f"{row['variant']:18s} {'—':>17s} {'—':>8s}  {row['verdict']}")
            continue
        acc = f"{row['test_accuracy']:.4f} ± {row['test_accuracy_std']:.4f}"
        lines.append(f"{row['variant']:18s} {acc:>17s} {row['delta']:+8.4f}  {row['verdict'] or ''}")
    return "\n".join(lines)


def check_sanity_request(configs: dict, schedule: str | None = None, data=None) -> None:
    """What `run_sanity` needs, checked before anything is written: a known method (imp and ltr with their
    IMP schedule), the data against the recipe and rewind step, and a density the model can keep.
    `data`: the Dataset, when it is already in memory."""
    pai = configs["pai"]
    if pai.method not in IMP_METHODS:
        check_method(pai.method)
        if schedule is not None:
            raise TicketlabError("--imp-schedule applies to --method imp or ltr; drop it")
    data, model = checked_data(configs, {"--rewind-step": pai.rewind_step}, data=data)
    if pai.method in IMP_METHODS:
        imp_levels_keep_weights(PruneConfig(schedule=imp_schedule(pai.density, schedule)), model, configs["model"].model)
    else:
        check_pai_request(configs, data, model, pai.method, pai.density)
