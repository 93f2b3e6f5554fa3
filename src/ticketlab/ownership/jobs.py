"""What the ownership commands do: keygen, sign, verify and attack, from files to files.

Every input (key, ticket, claim, options, data) is checked before anything is written, and every
output is written atomically, the signed ticket before its claim. Signing retrains in a hidden work
folder beside the output (`.<name>.signing-<hash>/`, likewise for fine-tuning attacks) so that an
interrupted run resumes when the same command is run again; the folder is removed when done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ticketlab import checks
from ticketlab.config import DataConfig, TrainConfig, derive_seed, validate_train
from ticketlab.deploy.export import load_exported, ticket_model
from ticketlab.errors import TicketlabError
from ticketlab.files import remove_stale_temporaries
from ticketlab.models import model_from_architecture
from ticketlab.ownership import attacks
from ticketlab.ownership.chain import layer_chain, layer_index
from ticketlab.ownership.triggers import DEFAULT_TRIGGERS, PER_BATCH, TriggerMixer, make_triggers
from ticketlab.ownership.verify import blackbox, suspect_state, whitebox
from ticketlab.runs import open_dir
from ticketlab.runtime import load_data_config
from ticketlab.ticket import Ticket, load_ticket, read_metadata, timings_path
from ticketlab.trainer import evaluate, train
from ticketlab.ownership.claim import (DEFAULT_SIGNIFICANCE, FORMAT, MAX_TRIGGERS, VERSION, pack_reference, read_claim,
                                       write_claim)
from ticketlab.ownership.keys import (commitment, generate_key, key_fingerprint, keyed_seed, read_key, signature_bits,
                                      ticket_id, write_key)
from ticketlab.ownership.signature import (GROUP, RELATIVE_THRESHOLD, UNIT_TEXT, default_carriers, embed, place_bits,
                                           unit_alive, unit_entries)


def keygen_job(out: str | Path) -> dict:
    key = generate_key()
    write_key(out, key)
    return {"key": str(out), "fingerprint": key_fingerprint(key)}


# ---- inputs ----------------------------------------------------------------------------------

def recipe(ticket: Ticket, overrides: dict) -> TrainConfig:
    if "train_config" not in ticket.info:
        raise TicketlabError("the ticket records no training recipe; it cannot be retrained here")
    cfg = dataclasses.replace(TrainConfig(**ticket.info["train_config"]), **overrides)
    validate_train(cfg)
    return cfg


def load_ticket_data(ticket: Ticket, data_root: str | None):
    if "data_config" not in ticket.info:
        raise TicketlabError("the ticket records no dataset; it cannot be trained or evaluated here")
    cfg = DataConfig(**ticket.info["data_config"])
    if data_root:
        cfg = dataclasses.replace(cfg, data_root=data_root)
    data = load_data_config(cfg)
    if list(data.input_shape) != list(ticket.architecture["input_shape"]):
        raise TicketlabError(f"dataset {cfg.dataset} has inputs {data.input_shape}, the ticket's model takes "
                             f"{tuple(ticket.architecture['input_shape'])}")
    return data


def check_recipe_data(cfg: TrainConfig, ticket: Ticket, data) -> None:
    """A retraining from the ticket's rewind point with `cfg` fits the data (before anything is written)."""
    rewind = int(ticket.info.get("rewind_step", 0))
    checks.check_training_data(cfg, len(data.train_y), data.name,
                               {"the ticket's rewind step": f"{rewind}it"} if rewind else None)


def carrier_names(spec: str | None) -> list[str] | None:
    if not spec:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    return [n if n.endswith(".weight") else f"{n}.weight" for n in names]


def check_outputs(*paths: Path, inputs: tuple[Path, ...] = ()) -> None:
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved) or any(p.resolve() in resolved for p in inputs):
        raise TicketlabError("the output files must differ from each other and from the inputs")


def work_folder(out: Path, kind: str, identity: dict) -> Path:
    """The folder of a training whose result goes to `out`, opened (locked, stale temp files cleared)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return open_dir(out.parent / f".{out.name}.{kind}-{digest}")


# ---- sign ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    """A signature before retraining: where the bits go and the mask and θ_k that carry them."""
    tid: str
    bits: np.ndarray
    carriers: list[int]
    positions: dict[int, torch.Tensor]
    mask: object
    init_state: dict
    changes: dict


def rebalance_source(ticket: Ticket, key: bytes, tid: str) -> dict[str, torch.Tensor]:
    """Starting values for switched-on weights: the ticket's own θ₀ when it can be rebuilt (rewind to
    0 and a recorded init seed that reproduces θ_k), else a fresh key-seeded initialization."""
    info = ticket.info
    if int(info.get("rewind_step", 0)) == 0 and isinstance(info.get("init_seed"), int):
        theta0 = model_from_architecture(ticket.architecture, seed=info["init_seed"]).state_dict()
        if all(torch.equal(theta0[n][m], ticket.init_state[n][m]) for n, m in ticket.mask.tensors.items()):
            return theta0
    return model_from_architecture(ticket.architecture, seed=keyed_seed(key, "fresh-weights", tid)).state_dict()


def plan_signature(ticket: Ticket, key: bytes, n: int | None, carriers: list[str] | None) -> Plan:
    model = model_from_architecture(ticket.architecture)
    ticket.mask.check_matches(model)
    chain = layer_chain(model)
    state = ticket.trained_state if ticket.trained_state is not None else ticket.init_state
    scores = {name: state[name] * ticket.mask[name] for name in ticket.mask.names()}
    if carriers is None:
        indices = default_carriers(chain, ticket.mask, scores, n)
    else:
        indices = sorted({layer_index(chain, name) for name in carriers})
    tid = ticket_id(ticket.mask)
    generator = torch.Generator().manual_seed(keyed_seed(key, "placement", tid))
    positions, n = place_bits(chain, indices, ticket.mask, scores, n, generator)
    bits = signature_bits(key, tid, n)
    mask, init_state, changes = embed(chain, ticket.mask, ticket.init_state, positions, bits,
                                      rebalance_source(ticket, key, tid),
                                      torch.Generator().manual_seed(keyed_seed(key, "rebalance", tid)))
    for name in ticket.mask.names():  # the promise: every layer keeps exactly its number of weights
        assert int(mask[name].sum()) == int(ticket.mask[name].sum()), name
    return Plan(tid, bits, indices, positions, mask, init_state, changes)


def reference_layers(chain, carriers: list[int]) -> list[int]:
    """The layers alignment compares: the chain up to the last carrier, plus the next layer unless
    it is a conv net's flattening layer (large, and the conv layers are matched well without it)."""
    last = max(carriers)
    upto = last + 1 if last + 1 < len(chain) and chain[last + 1].in_block == 1 else last
    return list(range(upto + 1))


def build_claim(ticket: Ticket, signed: Ticket, plan: Plan, key: bytes, triggers: int, significance: float) -> dict:
    chain = layer_chain(model_from_architecture(ticket.architecture))
    trained = signed.trained_state
    reference = {}
    for i in reference_layers(chain, plan.carriers):
        layer = chain[i]
        weight = trained[layer.weight] * signed.mask[layer.weight]
        if i in plan.positions:  # the bits must not be readable from the claim
            weight = weight * ~unit_entries(tuple(weight.shape), layer.kind, plan.positions[i])
        reference[layer.weight] = weight
        if layer.bias is not None:
            reference[layer.bias] = trained[layer.bias]
    data, digest = pack_reference(reference)
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    carriers = [{"layer": chain[i].weight, "kind": chain[i].kind, "positions": plan.positions[i].tolist(),
                 "units": int(unit_alive(signed.mask[chain[i].weight], chain[i].kind).numel()),
                 "alive_units": int(unit_alive(signed.mask[chain[i].weight], chain[i].kind).sum()),
                 "alive_weights": int(signed.mask[chain[i].weight].sum())} for i in plan.carriers]
    return {"format": FORMAT, "version": VERSION, "architecture": ticket.architecture, "ticket_id": plan.tid,
            "timestamp": timestamp, "commitment": commitment(key, plan.tid, timestamp), "bits": len(plan.bits),
            "triggers": triggers, "significance": significance,
            "unit": {kind: UNIT_TEXT[kind] for kind in sorted({c["kind"] for c in carriers})}, "linear_group": GROUP,
            "liveness": {"relative_threshold": RELATIVE_THRESHOLD,
                         "rule": "alive iff max |w| of the unit > relative_threshold × median |w| of the layer's "
                                 "alive_weights largest weights, and the unit is among the alive_units largest"},
            "p0": 0.5, "carriers": carriers,
            "reference": {"layers": sorted(reference), "dtype": "float16", "data": data, "sha256": digest}}


def predict_labels(model) -> Callable:
    def predict(x):
        with torch.inference_mode():
            return model(x).argmax(1)
    return predict


def sign(ticket: Ticket, key: bytes, data, cfg: TrainConfig, work_dir: Path, *, bits: int | None = None,
         carriers: list[str] | None = None, triggers: int = DEFAULT_TRIGGERS, per_batch: int = PER_BATCH,
         significance: float = DEFAULT_SIGNIFICANCE, quiet: bool = True, plan: Plan | None = None) -> tuple[Ticket, dict, dict]:
    """Embed the key's signature and triggers in `ticket` and retrain it from θ_k; returns the signed
    ticket, its claim and a report. Writes only into `work_dir` (the training's checkpoints)."""
    plan = plan or plan_signature(ticket, key, bits, carriers)
    arch = ticket.architecture
    trigger_x, trigger_y = make_triggers(key, plan.tid, triggers, arch["input_shape"], arch["num_classes"])
    model = model_from_architecture(arch)
    model.load_state_dict(plan.init_state)
    summary = train(model, data, cfg, out_dir=work_dir, data_seed=int(ticket.info.get("data_seed", 0)), mask=plan.mask,
                    start_iteration=int(ticket.info.get("rewind_step", 0)), quiet=quiet, label="sign",
                    batch_hook=TriggerMixer(trigger_x, trigger_y, per_batch) if triggers else None)
    model.eval()
    trigger_accuracy = float((predict_labels(model)(trigger_x) == trigger_y).float().mean()) if triggers else None
    info = {**ticket.info, "train_config": vars(cfg).copy(), "metrics": summary}
    signed = Ticket(arch, plan.mask, plan.init_state, {k: v.detach().clone() for k, v in model.state_dict().items()}, info)
    claim = build_claim(ticket, signed, plan, key, triggers, significance)
    unsigned = (ticket.info.get("metrics") or {}).get("test_accuracy")
    report = {"ticket_id": plan.tid, "bits": len(plan.bits), "triggers": triggers,
              "carriers": [c["layer"] for c in claim["carriers"]],
              "killed_units": sum(c["killed_units"] for c in plan.changes.values()),
              "rebalanced_weights": sum(c["revived_weights"] for c in plan.changes.values()),
              "density": plan.mask.density(), "test_accuracy": summary["test_accuracy"],
              "unsigned_test_accuracy": unsigned, "trigger_accuracy": trigger_accuracy,
              "commitment": claim["commitment"], "timestamp": claim["timestamp"]}
    return signed, claim, report


def sign_job(ticket_path: str | Path, key_path: str | Path, out: str | Path, claim_path: str | Path | None = None, *,
             bits: int | None = None, carriers: str | None = None, triggers: int = DEFAULT_TRIGGERS,
             per_batch: int = PER_BATCH, significance: float = DEFAULT_SIGNIFICANCE, overrides: dict | None = None,
             data_root: str | None = None, quiet: bool = True) -> dict:
    out = Path(out)
    claim_path = Path(claim_path) if claim_path else out.with_name(out.name.removesuffix(".safetensors") + ".claim.json")
    check_outputs(out, claim_path, inputs=(Path(ticket_path), Path(key_path)))
    check_counts(triggers, per_batch, significance)
    key = read_key(key_path)
    ticket = load_ticket(ticket_path)
    cfg = recipe(ticket, overrides or {})
    plan = plan_signature(ticket, key, bits, carrier_names(carriers))
    data = load_ticket_data(ticket, data_root)
    check_recipe_data(cfg, ticket, data)
    for target in (out, timings_path(out), claim_path):  # what writers of an earlier, killed run left beside them
        remove_stale_temporaries(target.parent, [target.name])
    work = work_folder(out, "signing", {"ticket": read_metadata(ticket_path)["checksum"], "key": key_fingerprint(key),
                                        "bits": len(plan.bits), "carriers": plan.carriers, "triggers": triggers,
                                        "per_batch": per_batch, "train": dataclasses.asdict(cfg)})
    signed, claim, report = sign(ticket, key, data, cfg, work, triggers=triggers, per_batch=per_batch,
                                 significance=significance, quiet=quiet, plan=plan)
    signed.save(out)
    claim["signed_checksum"] = read_metadata(out)["checksum"]  # binds the claim to the file; the ticket holds no clock
    write_claim(claim_path, claim)
    shutil.rmtree(work, ignore_errors=True)
    return {"ticket": str(out), "claim": str(claim_path), **report}


def check_counts(triggers: int, per_batch: int, significance: float) -> None:
    if triggers < 0 or per_batch < 1:
        raise TicketlabError(f"--triggers must be 0 or more and --triggers-per-batch at least 1 (got {triggers}, {per_batch})")
    if triggers > MAX_TRIGGERS or per_batch > MAX_TRIGGERS:
        raise TicketlabError(f"--triggers and --triggers-per-batch must be at most {MAX_TRIGGERS:,} (got {triggers}, {per_batch})")
    if not 0 < significance < 1:
        raise TicketlabError(f"--significance must be in (0, 1), got {significance}")


# ---- verify ----------------------------------------------------------------------------------

def verify_job(suspect: str | Path, key_path: str | Path, claim_path: str | Path, black_box: bool = False,
               torchscript: bool = False) -> dict:
    """`torchscript=True` (black-box only) allows a TorchScript suspect, whose loading runs code from it."""
    key = read_key(key_path)
    claim = read_claim(claim_path)
    if black_box:
        if int(claim.get("triggers", 0)) < 1:
            raise TicketlabError(f"claim {claim_path} has no trigger set (signed with --triggers 0); verify white-box")
        loaded = load_exported(suspect, torchscript=torchscript)
        shape = tuple(claim["architecture"]["input_shape"])
        if loaded.input_shape and tuple(loaded.input_shape) != shape:
            raise TicketlabError(f"{suspect} takes inputs {tuple(loaded.input_shape)}, the claim's model {shape}; "
                                 "give the claim made for this model")
        result = blackbox(lambda x: torch.as_tensor(loaded.run(x)).argmax(1), claim, key)
    else:
        result = whitebox(suspect_state(suspect, claim), claim, key)
    return {"suspect": str(suspect), "claim": str(claim_path), **result}


# ---- attack ----------------------------------------------------------------------------------

def test_accuracy(ticket: Ticket, data) -> float:
    return evaluate(ticket_model(ticket), data.test_x, data.test_y)[1]


def forger_paths(out: Path) -> tuple[Path, Path]:
    stem = out.name.removesuffix(".safetensors")
    return out.with_name(stem + ".forger.key"), out.with_name(stem + ".forger.claim.json")


def forge(ticket: Ticket, signed_path, bits: int | None, data, cfg: TrainConfig, out: Path, seed: int,
          quiet: bool) -> tuple[Ticket, dict]:
    """The ambiguity attack: a new key signs the stolen ticket and retrains it. Returns the forged
    ticket and what to write (the forger's key and claim stay in memory until the ticket is saved)."""
    key = generate_key()
    plan = plan_signature(ticket, key, bits, None)
    work = work_folder(out, "forging", {"ticket": read_metadata(signed_path)["checksum"], "seed": seed,
                                        "key": key_fingerprint(key)})
    forged, claim, report = sign(ticket, key, data, cfg, work, plan=plan, quiet=quiet)
    shutil.rmtree(work, ignore_errors=True)
    forged.info["attack"] = {"kind": "forge", "strength": len(plan.bits)}
    key_path, claim_path = forger_paths(out)
    return forged, {"forger_key": str(key_path), "forger_claim": str(claim_path), "strength": len(plan.bits),
                    "forger_trigger_accuracy": report["trigger_accuracy"], "key": key, "claim": claim}


def attack_job(signed_path: str | Path, kind: str, strength: float | None, out: str | Path, *, seed: int = 0,
               keep_mask: bool = True, scale: float = attacks.DEFAULT_DENSIFY_SCALE, overrides: dict | None = None,
               data_root: str | None = None, quiet: bool = True) -> dict:
    strength = attacks.check_strength(kind, strength)
    out = Path(out)
    extra_outputs = forger_paths(out) if kind == "forge" else ()
    check_outputs(out, *extra_outputs, inputs=(Path(signed_path),))
    if kind == "forge" and extra_outputs[0].exists():
        raise TicketlabError(f"{extra_outputs[0]} already exists; a key file is never overwritten, choose another --out")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise TicketlabError(f"--scale must be a positive finite number, got {scale!r}")
    checks.seed("--seed", seed)
    ticket = load_ticket(signed_path)
    if kind in ("permute", "forge"):
        layer_chain(model_from_architecture(ticket.architecture))  # supported model?
    cfg = recipe(ticket, overrides or {}) if kind in ("finetune", "forge") else None
    data = load_ticket_data(ticket, data_root)
    if kind == "forge":
        check_recipe_data(cfg, ticket, data)
    elif kind == "finetune":
        checks.check_training_data(dataclasses.replace(cfg, steps="1it", eval_every="1it"), len(data.train_y), data.name)
    generator = torch.Generator().manual_seed(derive_seed(seed, f"attack:{kind}"))
    result = {"kind": kind, "strength": strength, "seed": seed,
              "signed_test_accuracy": (ticket.info.get("metrics") or {}).get("test_accuracy")}
    if kind in ("prune-magnitude", "prune-random"):
        attacked = attacks.prune(ticket, strength, kind.removeprefix("prune-"), generator)
    elif kind == "densify":
        attacked = attacks.densify(ticket, strength, scale, generator)
    elif kind == "permute":
        attacked = attacks.permute(ticket, strength, generator)
    elif kind == "finetune":
        work = work_folder(out, "finetune", {"ticket": read_metadata(signed_path)["checksum"], "epochs": strength,
                                             "keep_mask": keep_mask, "seed": seed, "train": dataclasses.asdict(cfg)})
        attacked, _ = attacks.finetune(ticket, data, cfg, strength, keep_mask, work, derive_seed(seed, "attack-data"), quiet)
        shutil.rmtree(work, ignore_errors=True)
        result.update(lr=cfg.lr, keep_mask=keep_mask)
    else:
        attacked, forged = forge(ticket, signed_path, None if strength is None else int(strength), data, cfg, out,
                                 seed, quiet)
        forger_key, forger_claim = forged.pop("key"), forged.pop("claim")
        result.update(forged)
    attacked.save(out)
    if kind == "forge":  # the forger's key and claim, once the forged ticket is in place
        write_key(result["forger_key"], forger_key)
        write_claim(result["forger_claim"], forger_claim)
    return {"ticket": str(out), "test_accuracy": test_accuracy(attacked, data), "density": attacked.mask.density(),
            **result}
