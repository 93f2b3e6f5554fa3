"""Sanity checks for a pruning method (Frankle et al. 2021; Su et al. 2020).

The method's ticket and three ablations train with the same recipe from the same rewind step:
  shuffle-layerwise  each layer's mask permuted (same per-layer counts), weights θ_k
  reinit             the same mask, fresh weights from the init distribution
  invert             the lowest-scored weights by the method's own score, same count
Each ablation is compared with the ticket seed by seed (same θ₀, data order and scoring batches), the
claim being "the ablation loses test accuracy" (ticket − ablation > 0), decided by stats.py's rule
(SANITY_RULE): *supported* (the method passes) when the paired 95% t-interval of the loss lies above
0; *not supported* (it fails: its mask is no better than that ablation, e.g. it only chose layer-wise
densities) when the interval lies below +1 pp (SANITY_TOLERANCE), which rules out a loss worth
naming; *inconclusive* otherwise, with one seed, or when the ticket itself did not train (a seed at
or below chance + 20% of the way to 1). Each row carries the paired statistics (differences, mean,
interval, t-test, exact sign and Wilcoxon tests).
The method is looked up in the registry of mask-finding methods (pai/registry.py): a method that finds
its mask per request (PaI, CTS) gets the one-shot check here, its inverted ticket found by the method
itself when it has a score order; a method with a sanity procedure of its own runs that (IMP and LTR,
lth/sanity.py: the ticket is a level of an IMP run, inverted by IMP's magnitude score).
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.config import derive_seed
from ticketlab.errors import TicketlabError
from ticketlab.files import write_json
from ticketlab.lth import sanity as lth_sanity  # registers imp and ltr
from ticketlab.lth.aggregate import mean_std
from ticketlab.models import model_from_config
from ticketlab.pai.ablations import shuffle_layerwise
from ticketlab.pai.jobs import check_method, check_pai_request, prune_seed, rewind_weights
from ticketlab.pai.registry import SanityProcedure, finding_method, mask_method, mask_methods
from ticketlab.runs import open_run, run_dir_for
from ticketlab.runtime import checked_data, load_data, run_seeds, train_ticket_file
from ticketlab.stats import RULE, judge
from ticketlab.ticket import load_ticket

ABLATIONS = ("shuffle-layerwise", "reinit", "invert")
imp_schedule = lth_sanity.imp_schedule
IMP_METHODS = tuple(m.name for m in mask_methods("lth"))  # the methods checked through an IMP run


SANITY_TOLERANCE = 0.01  # a loss below 1 pp of test accuracy is not worth naming
SANITY_RULE = ("claim: the ablation loses test accuracy (ticket − ablation > 0), paired by seed; " + RULE
               + f"; tolerance {100 * SANITY_TOLERANCE:g} pp; the ticket must have trained")


def ablation_verdict(ticket: dict, ablation: dict, chance: float) -> dict:
    """The paired comparison of ticket and ablation (seed → test accuracy) and its verdict (SANITY_RULE)."""
    return judge(ticket, ablation, 0.0, tolerance=SANITY_TOLERANCE, chance=chance, must_train="a",
                 names=("the ticket", "the ablation"))


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
    if finding_method(configs["pai"].method).score_order is not None:
        inverted = prune_seed(seed, configs, data, runs_dir, quiet, invert=True)
        results["invert"] = train_ticket_file(inverted, inverted.parent / "train", data, quiet, label=f"seed {seed} invert")
    return {k: v["test_accuracy"] for k, v in results.items()} | {"density": ticket.mask.density()}


def check_one_shot_sanity(configs: dict, schedule: str | None, data=None) -> None:
    """The data fits the recipe and rewind step, and the method's request checks (density, options)."""
    if schedule is not None:
        raise TicketlabError("--imp-schedule applies to --method imp or ltr; drop it")
    pai = configs["pai"]
    data, model = checked_data(configs, {"--rewind-step": pai.rewind_step}, data=data)
    check_pai_request(configs, data, model, pai.method, pai.density)


def run_one_shot_sanity(configs: dict, seeds: list[int], runs_dir: str, quiet: bool, workers: int,
                        schedule: str | None) -> tuple[dict, Path]:
    check_method(configs["pai"].method)
    open_run(runs_dir, "prune", configs)
    per_seed = run_seeds(pai_sanity_seed, seeds, workers, configs, runs_dir, quiet)
    return per_seed, run_dir_for(runs_dir, "prune", configs)


ONE_SHOT = SanityProcedure(check=check_one_shot_sanity, run=run_one_shot_sanity)


def sanity_procedure(method: str) -> SanityProcedure:
    """How `method` is checked: its own procedure, or the one-shot one (one line for an unknown method)."""
    return mask_method(method).sanity or ONE_SHOT


def run_sanity(configs: dict, seeds: list[int], runs_dir: str, quiet: bool, workers: int,
               schedule: str | None = None) -> dict:
    """`schedule`: the density schedule of the IMP run checked by --method imp/ltr (see lth.sanity.imp_schedule)."""
    method = configs["pai"].method
    procedure = sanity_procedure(method)
    chance = 1 / load_data(configs).num_classes
    per_seed, run_dir = procedure.run(configs, seeds, runs_dir, quiet, workers, schedule)
    result = {"method": method, "density": per_seed[seeds[0]]["density"], "seeds": seeds, "run_dir": str(run_dir),
              "rows": sanity_rows(per_seed, seeds, chance), "rule": SANITY_RULE, "chance": chance,
              "per_seed": {str(s): per_seed[s] for s in seeds}}
    write_json(Path(run_dir) / f"sanity-{'-'.join(map(str, seeds))}.json", result)
    return result


def sanity_rows(per_seed: dict, seeds: list[int], chance: float) -> list[dict]:
    """The ticket's row, then one per ablation: mean ± std over seeds, the mean change, the verdict, its
    reason and the paired statistics (`paired`)."""
    ticket = {s: per_seed[s]["ticket"] for s in seeds}
    mean, std = mean_std(list(ticket.values()))
    rows = [{"variant": "ticket", "test_accuracy": mean, "test_accuracy_std": std, "delta": 0.0, "verdict": None}]
    for ablation in ABLATIONS:
        accs = {s: per_seed[s][ablation] for s in seeds if ablation in per_seed[s]}
        if not accs:
            rows.append({"variant": ablation, "test_accuracy": None, "test_accuracy_std": None, "delta": None,
                         "verdict": "not defined (the method has no scores)"})
            continue
        judged = ablation_verdict(ticket, accs, chance)
        mean, std = mean_std(list(accs.values()))
        rows.append({"variant": ablation, "test_accuracy": mean, "test_accuracy_std": std,
                     "delta": mean - rows[0]["test_accuracy"], "verdict": judged["verdict"],
                     "reason": judged["reason"], "paired": {k: v for k, v in judged.items() if k not in ("verdict", "reason")}})
    return rows


def sanity_table(result: dict) -> str:
    lines = [f"sanity checks of {result['method']} at density {result['density']:.4f} "
             f"({len(result['seeds'])} seeds)", f"{'variant':18s} {'test acc':>17s} {'delta':>8s}  verdict"]
    for row in result["rows"]:
        if row["test_accuracy"] is None:
            lines.append(f"{row['variant']:18s} {'—':>17s} {'—':>8s}  {row['verdict']}")
            continue
        acc = f"{row['test_accuracy']:.4f} ± {row['test_accuracy_std']:.4f}"
        verdict = f"{row['verdict']}: {row['reason']}" if row.get("reason") else (row["verdict"] or "")
        lines.append(f"{row['variant']:18s} {acc:>17s} {row['delta']:+8.4f}  {verdict}")
    if "rule" in result:
        lines.append(f"rule: {result['rule']}")
    return "\n".join(lines)


def check_sanity_request(configs: dict, schedule: str | None = None, data=None) -> None:
    """What `run_sanity` needs, checked before anything is written: a known method (imp and ltr with their
    IMP schedule), the data against the recipe and rewind step, and a density the model can keep.
    `data`: the Dataset, when it is already in memory."""
    sanity_procedure(configs["pai"].method).check(configs, schedule, data)
