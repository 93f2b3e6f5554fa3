"""Ownership of a ticket on Fashion-MNIST: embedding cost, false positives and a robustness table.

For each model, tickets are found for the owner seeds and for independent seeds (same method and
density), every owner ticket is signed with its own key (`ticketlab keygen`, `ticketlab sign`), and
then, per owner seed:
  - embedding cost: the signed ticket's test accuracy against the unsigned ticket trained with the
    same recipe, data order and θ_k;
  - false positives: every independent ticket is verified (white-box and black-box) against every
    owner claim with the owner's key, and the empirical bit agreement under the null is reported;
    the owner's signed ticket is verified with a forger's key;
  - attacks (`ticketlab attack`) across strengths, each attacked model verified white-box and
    black-box, with its test accuracy; the strength at which verification first fails, and the
    accuracy the thief has left there against what a freshly found ticket scores (the independent
    tickets' mean accuracy).
Presets (all runs on 2 CPU cores; the full scale is sized to finish in under an hour):
  lenet  LeNet-300-100, IMP with reset to θ₀ in three levels (30%, 10%, 3.6% of the weights, global
         magnitude), Adam 1.2e-3, batch 60, 2,000 iterations per training on a 20,000-image training
         subset (5,000 held out for validation), the full test set; 3 owner seeds, 10 independent.
  conv2  Conv-2, SNIP at 10% density (one-shot pruning at θ₀: IMP on Conv-2 costs ~50x LeNet per
         example), Adam 2e-4, batch 60, 200 iterations on a 2,000-image subset (500 validation), the
         first 1,000 test images; 3 owner seeds, 10 independent.
  Estimated from one-owner-seed runs on this 2-core machine while other jobs ran: LeNet ≈ 12 min,
  Conv-2 ≈ 40 min (Conv-2 training dominates: ~0.25 s per iteration). Finished steps are stored in
  --workdir, so an interrupted run resumes. --scale smoke shrinks everything to about two minutes,
  to check that the script runs (write its report elsewhere with --out: its numbers mean nothing).
Writes report.md (every verdict computed from the numbers) and results.json into --out.

    .venv/bin/python benchmarks/ownership_robustness.py [--scale full|smoke] [--models lenet,conv2]
                     [--workdir runs/ownership-robustness] [--out docs/results/ownership-fashion]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import io
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from ticketlab.cli import main as ticketlab_main

REPO = Path(__file__).resolve().parents[1]
SIGNIFICANCE = 1e-6
OTHER_KEYS = 1000  # keys per (claim, independent ticket) for the measured null distribution

MODELS = {
    "lenet": {
        "title": "LeNet-300-100, IMP to 3.6% of the weights",
        "find": ["imp", "--model", "lenet_300_100", "--schedule", "0.3,0.1,0.036", "--strategy", "global"],
        "data": ["--dataset", "fashion-mnist", "--train-subset", "20000", "--val-size", "5000"],
        "train": ["--optimizer", "adam", "--lr", "1.2e-3", "--batch-size", "60", "--steps", "2000it", "--eval-every", "2000it"],
        "lr": 1.2e-3,
        "scale": "2,000 iterations per training (batch 60) on 15,000 training images (a 20,000-image subset less "
                 "5,000 for validation), the full 10,000-image test set",
    },
    "conv2": {
        "title": "Conv-2, SNIP at 10% of the weights",
        "find": ["pai", "--model", "conv2", "--methods", "snip", "--densities", "0.1"],
        "data": ["--dataset", "fashion-mnist", "--train-subset", "2000", "--val-size", "500", "--test-subset", "1000"],
        "train": ["--optimizer", "adam", "--lr", "2e-4", "--batch-size", "60", "--steps", "200it", "--eval-every", "200it"],
        "lr": 2e-4,
        "scale": "200 iterations per training (batch 60) on 1,500 training images (a 2,000-image subset less 500 "
                 "for validation), the first 1,000 test images",
    },
}

SCALES = {
    "full": {"owner_seeds": [0, 1, 2], "null_seeds": list(range(100, 110)), "finetune_epochs": [1, 10],
             "prune": [0.1, 0.3, 0.5, 0.7, 0.8, 0.9], "densify": [0.1, 0.5, 1.0], "permute": [0.5, 1.0], "forge": True,
             "overrides": {}},
    "smoke": {"owner_seeds": [0], "null_seeds": [100, 101], "finetune_epochs": [1], "prune": [0.5, 0.9],
              "densify": [1.0], "permute": [1.0], "forge": True,
              "overrides": {"lenet": {"--schedule": "0.2,0.036", "--train-subset": "1200", "--val-size": "200",
                                      "--steps": "40it", "--eval-every": "40it", "--test-subset": "500"},
                            "conv2": {"--train-subset": "400", "--val-size": "100", "--test-subset": "200",
                                      "--steps": "10it", "--eval-every": "10it"}}},
}


# ---- running ticketlab ---------------------------------------------------------------------

def ticketlab(*args, ok=(0,)) -> tuple[int, dict]:
    """One ticketlab command in this process with --json; returns (exit code, result)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ticketlab_main([str(a) for a in args] + ["--json"])
    if code not in ok:
        sys.exit(f"ticketlab {' '.join(map(str, args))} failed with exit code {code}")
    return code, json.loads(out.getvalue())


def with_overrides(args: list[str], overrides: dict) -> list[str]:
    args = list(args)
    for flag, value in overrides.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def cached(path: Path, compute):
    """A step's result, stored as JSON so that a rerun skips finished steps."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=True))
    return result


def find_tickets(model: dict, seeds: list[int], runs_dir: Path) -> dict[int, str]:
    """Trained tickets, one per seed, found by the model's method."""
    args = [*model["find"], *model["data"], *model["train"], "--seeds", ",".join(map(str, seeds)), "--workers", "2",
            "--runs-dir", runs_dir, "--quiet"]
    _, result = ticketlab(*args)
    if model["find"][0] == "imp":
        return dict(zip(seeds, result["levels"][-1]["tickets"], strict=True))
    return {s: str(Path(t).parent / "train" / "ticket.safetensors") for s, t in zip(seeds, result["results"][0]["tickets"], strict=True)}


def verify(suspect, key, claim) -> dict:
    _, white = ticketlab("verify", suspect, "--key", key, "--claim", claim, ok=(0, 1))
    _, black = ticketlab("verify", suspect, "--key", key, "--claim", claim, "--blackbox", ok=(0, 1))
    return {"wb_verified": white["verified"], "wb_p": white["p_value"], "wb_log10_p": white["log10_p_value"],
            "agreement": white["agreement"], "agreeing_bits": white["agreeing_bits"], "bits": white["bits"],
            "commitment_ok": white["commitment_ok"], "bb_verified": black["verified"], "bb_p": black["p_value"],
            "bb_log10_p": black["log10_p_value"], "trigger_accuracy": black["trigger_accuracy"], "chance": black["chance"]}


def other_keys(suspect, claim_path, seed: int, count: int = OTHER_KEYS) -> dict:
    """The suspect's agreement with the bits of `count` other keys at the claim's positions: the null
    distribution of the white-box statistic for this suspect, measured."""
    from ticketlab.ownership.claim import read_claim
    from ticketlab.ownership.keys import signature_bits
    from ticketlab.ownership.verify import binomial_p_value, read_signature, suspect_state
    claim = read_claim(claim_path)
    readings, _ = read_signature(suspect_state(suspect, claim), claim)
    agreeing = [int((signature_bits(hashlib.sha256(f"{seed}:{i}".encode()).digest(), claim["ticket_id"], len(readings))
                     == readings).sum()) for i in range(count)]
    log10_p = [binomial_p_value(k, len(readings), 0.5)[1] for k in agreeing]
    return {"other_keys": count, "other_keys_agreement": [k / len(readings) for k in agreeing],
            "other_keys_p_le_1e-3": sum(p <= -3 for p in log10_p), "other_keys_p_le_significance":
            sum(p <= math.log10(SIGNIFICANCE) for p in log10_p)}


def attack_plan(scale: dict, lr: float) -> list[tuple[str, str, float, list[str]]]:
    """(variant, kind, strength, extra options) for every attack of the table."""
    plan = []
    for keep in (True, False):
        for label, rate in (("recipe lr", lr), ("lr/10", lr / 10)):
            variant = f"finetune, mask {'kept' if keep else 'removed'}, {label}"
            for epochs in scale["finetune_epochs"]:
                plan.append((variant, "finetune", epochs, ["--lr", f"{rate:g}"] + ([] if keep else ["--no-keep-mask"])))
    plan += [("prune-magnitude", "prune-magnitude", s, []) for s in scale["prune"]]
    plan += [("prune-random", "prune-random", s, []) for s in scale["prune"]]
    plan += [("densify (scale 0.01)", "densify", s, []) for s in scale["densify"]]
    plan += [("densify (scale 0.1)", "densify", s, ["--scale", "0.1"]) for s in scale["densify"]]
    plan += [("permute", "permute", s, []) for s in scale["permute"]]
    if scale["forge"]:
        plan.append(("forge (forger's own key, retrained)", "forge", 256, []))
    return plan


# ---- one model -----------------------------------------------------------------------------

def run_model(name: str, scale: dict, scale_name: str, workdir: Path, log) -> dict:
    model = dict(MODELS[name])
    overrides = scale["overrides"].get(name, {})
    model["find"] = with_overrides(model["find"], {k: v for k, v in overrides.items() if k in model["find"]})
    model["data"] = with_overrides(model["data"], {k: v for k, v in overrides.items() if k.startswith(("--train-subset", "--val-size", "--test-subset"))})
    model["train"] = with_overrides(model["train"], {k: v for k, v in overrides.items() if k in ("--steps", "--eval-every")})
    root = workdir / scale_name / name
    started = time.perf_counter()
    owners, nulls = scale["owner_seeds"], scale["null_seeds"]
    tickets = cached(root / "tickets.json", lambda: {str(s): t for s, t in find_tickets(model, owners + nulls, root / "runs").items()})
    log(f"{name}: {len(tickets)} tickets found ({time.perf_counter() - started:.0f} s)")
    fresh = {s: json.loads(json.dumps(ticket_info(tickets[str(s)]))) for s in nulls}

    seeds = {}
    for seed in owners:
        seeds[seed] = owner_seed(seed, root / f"seed-{seed}", tickets, nulls, scale, model["lr"])
        signed = seeds[seed]["signed"]
        log(f"{name} seed {seed}: signed {signed['test_accuracy']:.4f} (unsigned {signed['unsigned_test_accuracy']:.4f}), "
            f"{len(seeds[seed]['attacks'])} attacks ({time.perf_counter() - started:.0f} s)")
    note = MODELS[name]["scale"] if not overrides else \
        f"smoke scale, the preset with {', '.join(f'{k} {v}' for k, v in overrides.items())}"
    return {"model": name, "config": model, "scale_note": note, "seeds": seeds, "fresh": fresh,
            "wall_seconds": time.perf_counter() - started}


def owner_seed(seed: int, folder: Path, tickets: dict, nulls: list[int], scale: dict, lr: float) -> dict:
    """Sign one owner's ticket, verify it, test it against the independent tickets, attack it."""
    key, forger = folder / "owner.key", folder / "forger.key"
    for path in (key, forger):
        if not path.exists():
            ticketlab("keygen", "--out", path)
    signed = cached(folder / "sign.json", lambda: ticketlab("sign", tickets[str(seed)], "--key", key, "--out",
                                                               folder / "signed.safetensors", "--quiet")[1])
    claim = signed["claim"]
    own = cached(folder / "verify-signed.json", lambda: verify(signed["ticket"], key, claim))
    forged_key = cached(folder / "verify-forger-key.json", lambda: verify(signed["ticket"], forger, claim))
    null = {str(s): cached(folder / f"null-{s}.json", lambda s=s: {**verify(tickets[str(s)], key, claim),
                                                                    **other_keys(tickets[str(s)], claim, seed)})
            for s in nulls}

    def attack(kind: str, strength: float, extra: list[str], out: Path) -> dict:
        args = ["attack", signed["ticket"], "--kind", kind, "--out", out, "--seed", seed, "--quiet", *extra]
        _, attacked = ticketlab(*args, *([] if kind == "forge" else ["--strength", strength]))
        return {"test_accuracy": attacked["test_accuracy"], "density": attacked["density"],
                **verify(attacked["ticket"], key, claim)}
    attacks = []
    for variant, kind, strength, extra in attack_plan(scale, lr):
        name = f"{kind}-{hashlib.sha256(f'{variant}:{strength}'.encode()).hexdigest()[:8]}"
        result = cached(folder / "attacks" / f"{name}.json",
                        lambda k=kind, s=strength, e=extra, n=name: attack(k, s, e, folder / "attacks" / f"{n}.safetensors"))
        attacks.append({"variant": variant, "kind": kind, "strength": strength, **result})
    return {"signed": signed, "verify": own, "forger_key": forged_key, "null": null, "attacks": attacks,
            "unsigned_test_accuracy": signed["unsigned_test_accuracy"]}


def ticket_info(path: str) -> dict:
    from ticketlab.ticket import read_metadata
    meta = read_metadata(path)
    return {"test_accuracy": meta["metrics"]["test_accuracy"], "density": meta["density"], "method": meta.get("method")}


# ---- report --------------------------------------------------------------------------------

def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def pct(value, std=None):
    return f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def p_text(log10_p: float) -> str:
    return "1" if log10_p > -0.005 else f"1e{log10_p:.1f}"


def model_section(result: dict) -> tuple[list[str], dict]:
    name, seeds, fresh = result["model"], result["seeds"], result["fresh"]
    lines, verdicts = [f"## {MODELS[name]['title']}", "", f"Scale: {result['scale_note']}.", ""], {}
    fresh_acc, fresh_std = mean_std([f["test_accuracy"] for f in fresh.values()])
    owner_density = mean_std([s["signed"]["density"] for s in seeds.values()])[0]
    lines += [f"Commands: `ticketlab {' '.join(result['config']['find'] + result['config']['data'] + result['config']['train'])}` "
              f"(seeds {', '.join(map(str, list(seeds) + list(fresh)))}), then `ticketlab keygen`, `ticketlab sign` "
              f"(defaults: 256 bits, 100 triggers) and `ticketlab attack` / `ticketlab verify` per owner seed.", "",
              f"Independently found tickets (seeds {', '.join(map(str, fresh))}): test accuracy {pct(fresh_acc, fresh_std)} %, "
              f"density {100 * mean_std([f['density'] for f in fresh.values()])[0]:.2f} %; owner tickets at "
              f"{100 * owner_density:.2f} % density.", ""]

    # embedding cost
    lines += ["### Embedding cost", "", "| seed | unsigned acc % | signed acc % | change (pp) | bits | units killed | "
              "trigger acc (train) | white-box p | black-box p |", "|---|---|---|---|---|---|---|---|---|"]
    deltas = []
    for seed, s in seeds.items():
        sig, v = s["signed"], s["verify"]
        deltas.append(sig["test_accuracy"] - s["unsigned_test_accuracy"])
        lines.append(f"| {seed} | {pct(s['unsigned_test_accuracy'])} | {pct(sig['test_accuracy'])} | {100 * deltas[-1]:+.2f} | "
                     f"{sig['bits']} | {sig['killed_units']} | {sig['trigger_accuracy']:.2f} | {p_text(v['wb_log10_p'])} | "
                     f"{p_text(v['bb_log10_p'])} |")
    d_mean, d_std = mean_std(deltas)
    own_ok = all(s["verify"]["wb_verified"] and s["verify"]["wb_p"] < 1e-10 for s in seeds.values())
    bb_ok = all(s["verify"]["bb_verified"] for s in seeds.values())
    lines += ["", f"Signing changes test accuracy by {100 * d_mean:+.2f} ± {100 * d_std:.2f} pp over {len(deltas)} seeds. "
              f"The owner's key verifies every signed ticket white-box at p < 1e-10: **{'yes' if own_ok else 'no'}**; "
              f"black-box at p ≤ {SIGNIFICANCE:g}: **{'yes' if bb_ok else 'no'}**.", ""]
    verdicts["owner verifies at p < 1e-10"] = own_ok

    # false positives
    nulls = [v for s in seeds.values() for v in s["null"].values()]
    agreements = [v["agreement"] for v in nulls]
    per_claim = [mean_std([v["agreement"] for v in s["null"].values()])[0] for s in seeds.values()]
    wb_false, bb_false = sum(v["wb_verified"] for v in nulls), sum(v["bb_verified"] for v in nulls)
    trig = [v["trigger_accuracy"] - v["chance"] for v in nulls]
    a_mean, a_std = mean_std(agreements)
    bits = next(iter(seeds.values()))["signed"]["bits"]
    expected_std = 0.5 / bits ** 0.5
    others = [a for v in nulls for a in v["other_keys_agreement"]]
    o_mean, o_std = mean_std(others)
    tests = len(others)
    low_p = sum(v["other_keys_p_le_1e-3"] for v in nulls)
    false_alarms = sum(v["other_keys_p_le_significance"] for v in nulls)
    forger_ok = not any(s["forger_key"]["wb_verified"] or s["forger_key"]["bb_verified"] for s in seeds.values())
    lines += ["### False positives", "",
              f"{len(agreements)} verifications of independently found tickets ({len(fresh)} tickets × {len(seeds)} owner "
              f"claims, each with its owner's key): white-box false verifications **{wb_false}**, black-box **{bb_false}**. "
              f"Empirical bit agreement under the null: {a_mean:.4f} ± {a_std:.4f} (min {min(agreements):.4f}, max "
              f"{max(agreements):.4f}; per claim {', '.join(f'{a:.4f}' for a in per_claim)}). Independent tickets read "
              f"the claimed units much alike (same data, same architecture), so with one claim their agreements move "
              f"together: the claims (keys) are the independent samples, and an exact Binomial(n = {bits}, 1/2) null "
              f"predicts 0.5 ± {expected_std:.4f} per claim. Smallest white-box p-value among them "
              f"{p_text(min(v['wb_log10_p'] for v in nulls))}, black-box {p_text(min(v['bb_log10_p'] for v in nulls))}; "
              f"trigger accuracy minus chance {mean_std(trig)[0]:+.3f} on average.",
              "", f"The same readings against the bits of {nulls[0]['other_keys']:,} other keys per (claim, ticket) pair "
              f"({tests:,} tests): agreement {o_mean:.4f} ± {o_std:.4f} (Binomial: 0.5 ± {expected_std:.4f}); "
              f"{low_p} tests at p ≤ 1e-3 ({100 * low_p / tests:.3f} %; an exact test gives at most 0.1 % in expectation) and {false_alarms} "
              f"at p ≤ {SIGNIFICANCE:g}.",
              "", "A forger's key on the owner's claim and signed ticket: "
              + ", ".join(f"seed {seed}: white-box p {p_text(s['forger_key']['wb_log10_p'])} (commitment "
                          f"{'matches' if s['forger_key']['commitment_ok'] else 'does not match'}), black-box p "
                          f"{p_text(s['forger_key']['bb_log10_p'])}" for seed, s in seeds.items())
              + f" — never verified: **{'yes' if forger_ok else 'no'}**.", ""]
    verdicts["no false positive on independent tickets"] = wb_false == 0 and bb_false == 0
    verdicts["null agreement consistent with 1/2 (claims' mean within 3 standard errors)"] = \
        abs(statistics.fmean(per_claim) - 0.5) <= 3 * expected_std / len(per_claim) ** 0.5
    verdicts["measured null false-alarm rate at p ≤ 1e-3 within its bound (0.1 %, + 3 binomial s.e.)"] = \
        low_p / tests <= 1e-3 + 3 * (1e-3 / tests) ** 0.5
    verdicts["forger's key never verifies the owner's claim"] = forger_ok

    # robustness table
    lines += ["### Attacks", "", "Accuracy and p-values over the owner seeds (accuracy mean ± std; p: the largest, "
              "i.e. the weakest evidence, over seeds; verified: seeds verified of all).", "",
              "| attack | strength | test acc % | white-box agreement | white-box p (max) | white-box verified | "
              "black-box p (max) | black-box verified |", "|---|---|---|---|---|---|---|---|"]
    rows = {}
    for s in seeds.values():
        for a in s["attacks"]:
            rows.setdefault((a["variant"], a["strength"]), []).append(a)
    for (variant, strength), runs in rows.items():
        acc = mean_std([r["test_accuracy"] for r in runs])
        lines.append(f"| {variant} | {strength:g} | {pct(*acc)} | {mean_std([r['agreement'] for r in runs])[0]:.3f} | "
                     f"{p_text(max(r['wb_log10_p'] for r in runs))} | {sum(r['wb_verified'] for r in runs)}/{len(runs)} | "
                     f"{p_text(max(r['bb_log10_p'] for r in runs))} | {sum(r['bb_verified'] for r in runs)}/{len(runs)} |")

    # breaking points
    lines += ["", "### Where verification fails", "",
              f"For each attack, the smallest strength at which verification fails for at least one seed, and the "
              f"thief's accuracy there against a freshly found ticket of the same method and density "
              f"({pct(fresh_acc)} %).", "",
              "| attack | white-box fails at | acc there % | worse than fresh? | black-box fails at | acc there % | worse than fresh? |",
              "|---|---|---|---|---|---|---|"]
    variants = list(dict.fromkeys(v for v, _ in rows))
    baseline = {"wb": all(s["verify"]["wb_verified"] for s in seeds.values()), "bb": bb_ok}
    costly = {}
    for variant in variants:
        cells = []
        for mode in ("wb", "bb"):
            if not baseline[mode]:
                cells += ["not verified before any attack", "—", "—"]
                continue
            broken = [(strength, runs) for (v, strength), runs in rows.items()
                      if v == variant and not all(r[f"{mode}_verified"] for r in runs)]
            if not broken:
                cells += ["survives all tested", "—", "—"]
                continue
            strength, runs = min(broken, key=lambda item: item[0])
            acc = mean_std([r["test_accuracy"] for r in runs])[0]
            worse = acc < fresh_acc
            costly.setdefault(mode, []).append(worse)
            cells += [f"{strength:g}", pct(acc), "yes" if worse else "**no**"]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")

    def survives(variant_prefix: str, strength=None, mode="wb") -> bool | None:
        runs = [r for (v, st), rs in rows.items() if v.startswith(variant_prefix) and (strength is None or st == strength) for r in rs]
        return all(r[f"{mode}_verified"] for r in runs) if runs else None

    epochs = max(SCALES_USED["finetune_epochs"])
    goals = {f"white-box survives fine-tuning for {epochs:g} epochs, mask kept, both lr": survives("finetune, mask kept", epochs),
             f"white-box survives fine-tuning for {epochs:g} epochs, mask removed, both lr": survives("finetune, mask removed", epochs),
             "white-box survives 50% magnitude pruning": survives("prune-magnitude", 0.5),
             "white-box survives 50% random pruning": survives("prune-random", 0.5),
             "white-box survives permutation": survives("permute"),
             "white-box survives densification with tiny values (0.01 × the layer's median |w|)": survives("densify (scale 0.01)"),
             "every attack that breaks white-box verification leaves the thief below a fresh ticket":
                 all(costly.get("wb", [True])) if baseline["wb"] else None,
             "every attack that breaks black-box verification leaves the thief below a fresh ticket":
                 all(costly.get("bb", [True])) if baseline["bb"] else None}
    verdicts.update(goals)
    lines += ["", "### Verdicts", ""]
    lines += [f"- {goal}: **{'yes' if ok else ('not tested (not verified before the attacks)' if ok is None else 'no')}**"
              for goal, ok in verdicts.items()]
    return lines, verdicts


SCALES_USED: dict = {}


def write_report(results: list[dict], out: Path, command: str, scale_name: str, wall: float) -> None:
    lines = ["# Ownership of a ticket: signatures, false positives and attacks on Fashion-MNIST", "",
             f"Command: `{command}`; run on {datetime.date.today().isoformat()} on 2 CPU cores "
             f"(torch {torch.__version__}), {wall / 60:.1f} minutes in all, scale **{scale_name}**.", "",
             "Method (see `src/ticketlab/ownership/`): n = 256 signature bits (or fewer when the carriers offer fewer "
             "candidate units) from HMAC-SHA256(key, ticket id) placed, blind to the bits, in alive mid-to-strong units of "
             "the carrier layers (conv: kernels, linear: groups of 4 weights) and forced by killing the units of the "
             "zeros, every layer's density restored by switching on as many random dead weights; 100 key-derived "
             "trigger inputs (6 per batch) learned during the retraining from θ_k. Verification aligns hidden units "
             "to the claim's reference (linear_sum_assignment), reads liveness from magnitudes (top-K units of the "
             "layer above 1e-3 × its scale), and tests k of n agreeing bits against Binomial(n, 1/2) — exact under "
             "the null because the bits are independent of anything made without the key; black-box tests trigger "
             f"accuracy against Binomial(m, most common trigger label's frequency). Decisions at p ≤ {SIGNIFICANCE:g}.",
             "", "Fine-tuning epochs are epochs of the (sub)set the ticket was trained on; 'recipe lr' is the ticket's "
             "own learning rate, 'lr/10' a tenth of it. Densification switches dead weights on at 0.01 × the layer's "
             "median alive |w| (tiny) or at 0.1 × (small). Forging re-signs the stolen ticket with a new key and retrains it from θ_k with its recipe.", ""]
    for result in results:
        section, _ = model_section(result)
        lines += section + [""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=tuple(SCALES), default="full")
    parser.add_argument("--models", default="lenet,conv2", help="comma-separated: lenet, conv2")
    parser.add_argument("--workdir", default=str(REPO / "runs" / "ownership-robustness"))
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "ownership-fashion"))
    args = parser.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    scale = SCALES[args.scale]
    SCALES_USED.update(scale)
    started = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", file=sys.stderr, flush=True)
    results = [run_model(name, scale, args.scale, Path(args.workdir), log) for name in names]
    command = "python benchmarks/ownership_robustness.py " + " ".join(sys.argv[1:])
    write_report(results, Path(args.out), command.strip(), args.scale, time.perf_counter() - started)
    log(f"report: {Path(args.out) / 'report.md'}")


if __name__ == "__main__":
    main()
