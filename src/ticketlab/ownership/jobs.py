"""What the ownership commands do: keygen, sign, register, verify, dispute and attack, from files to files.

Every input (key, ticket, claim, record, options, data) is checked before anything is written, and
every output is written atomically: the signed ticket, then its private claim, then its record.
Signing retrains in a hidden work folder beside the output (`.<name>.signing-<hash>/`, likewise for
the training attacks) so that an interrupted run resumes when the same command is run again; the
folder is removed when done. The salt and nonce of a signing are derived from the key and the ticket,
so the same signing gives the same files.
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
from ticketlab.config import TrainConfig, derive_seed, validate_train
from ticketlab.deploy.export import export_onnx, load_exported, ticket_model
from ticketlab.errors import TicketlabError
from ticketlab.files import remove_stale_temporaries, write_bytes
from ticketlab.models import model_from_architecture
from ticketlab.ownership import attacks
from ticketlab.ownership.align import align, descriptors, exclusions, make_sketch, parts, projection, unpack_sketch
from ticketlab.ownership.canonical import canonical, file_sha256, is_torchscript, load_model, weights_sha256
from ticketlab.ownership.claim import (CLAIM_FORMAT, RECORD_FORMAT, claim_commitment, read_claim, read_record,
                                       write_claim, write_record)
from ticketlab.ownership.keys import generate_key, key_commitment, key_fingerprint, prf, read_key, write_key
from ticketlab.ownership.scheme import CURRENT, Scheme
from ticketlab.ownership.scheme import scheme as scheme_of
from ticketlab.ownership.signature import Floors, embed, layer_bits, owner_alive_blocks, positions_and_bits
from ticketlab.ownership.structure import Structure, analyse
from ticketlab.ownership.triggers import PER_BATCH, TriggerMixer, make_triggers
from ticketlab.ownership.verification import blackbox, context, derivation, registration_checks, structure_for, whitebox
from ticketlab.runs import open_dir
from ticketlab.runtime import load_data_config
from ticketlab.ticket import Ticket, load_ticket, read_metadata, timings_path
from ticketlab.trainer import evaluate, train

CLAIM_FIT = 0.999  # share of the claim's sketch bits a registered model must reproduce


def keygen_job(out: str | Path) -> dict:
    key = generate_key()
    write_key(out, key)
    return {"key": str(out), "fingerprint": key_fingerprint(key)}


# ---- inputs ----------------------------------------------------------------------------------

def recipe(ticket: Ticket, overrides: dict) -> TrainConfig:
    if ticket.provenance.train_config is None:
        raise TicketlabError("the ticket records no training recipe; it cannot be retrained here")
    cfg = dataclasses.replace(ticket.recipe(), **overrides)
    validate_train(cfg)
    return cfg


def load_ticket_data(ticket: Ticket, data_root: str | None):
    if ticket.provenance.data_config is None:
        raise TicketlabError("the ticket records no dataset; it cannot be trained or evaluated here")
    cfg = ticket.data_config()
    if data_root:
        cfg = dataclasses.replace(cfg, data_root=data_root)
    data = load_data_config(cfg)
    if list(data.input_shape) != list(ticket.architecture["input_shape"]):
        raise TicketlabError(f"dataset {cfg.dataset} has inputs {data.input_shape}, the ticket's model takes "
                             f"{tuple(ticket.architecture['input_shape'])}")
    return data


def check_recipe_data(cfg: TrainConfig, ticket: Ticket, data) -> None:
    """A retraining from the ticket's rewind point with `cfg` fits the data (before anything is written)."""
    rewind = int(ticket.provenance.rewind_step or 0)
    checks.check_training_data(cfg, len(data.train_y), data.name,
                               {"the ticket's rewind step": f"{rewind}it"} if rewind else None)


def check_outputs(*paths: Path, inputs: tuple[Path, ...] = ()) -> None:
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved) or any(p.resolve() in resolved for p in inputs):
        raise TicketlabError("the output files must differ from each other and from the inputs")


def work_folder(out: Path, kind: str, identity: dict) -> Path:
    """The folder of a training whose result goes to `out`, opened (locked, stale temp files cleared)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return open_dir(out.parent / f".{out.name}.{kind}-{digest}")


def companion(path: Path, suffix: str) -> Path:
    """signed.safetensors -> signed.claim.json / signed.record.json."""
    stem = path.name
    for ending in (".safetensors", ".onnx", ".claim.json", ".record.json", ".pt", ".pth"):
        stem = stem.removesuffix(ending)
    return path.with_name(stem + suffix)


def check_scheme_options(scheme: Scheme, bits, carriers, triggers, significance) -> None:
    """The scheme fixes n, m, alpha and the carriers: options that ask for others are refused."""
    if bits is not None and bits != scheme.bits:
        raise TicketlabError(f"--bits {bits}: scheme {scheme.version} fixes {scheme.bits} signature bits; drop --bits")
    if carriers:
        raise TicketlabError(f"--carriers: scheme {scheme.version} derives the carrier layers from the model; drop --carriers")
    if triggers is not None and triggers != scheme.triggers:
        raise TicketlabError(f"--triggers {triggers}: scheme {scheme.version} fixes {scheme.triggers} triggers; drop --triggers")
    if significance is not None and not math.isclose(significance, scheme.alpha, rel_tol=1e-9):
        raise TicketlabError(f"--significance {significance:g}: scheme {scheme.version} fixes the level at "
                             f"{scheme.alpha:.3g} (10^-6 over 2^40 tries); drop --significance")


# ---- sign ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    """A signature before retraining: where the bits go and the mask and θ_k that carry them."""
    scheme: Scheme
    structure: Structure
    salt: str
    context: bytes
    positions: dict
    bits: np.ndarray
    order: list
    mask: object
    init_state: dict
    changes: dict
    held: dict

    @property
    def bits_by_layer(self) -> dict:
        return layer_bits(self.bits, self.order)


def signing_salt(key: bytes, ticket: Ticket) -> str:
    """16 bytes derived from the key and the unsigned ticket's content: the same signing, the same salt."""
    digest = weights_sha256({**{f"mask/{k}": v.float() for k, v in ticket.mask.tensors.items()},
                             **{f"init/{k}": v for k, v in ticket.init_state.items()}})
    return prf(key, "salt", bytes.fromhex(digest), 16).hex()


def rebalance_source(ticket: Ticket, key: bytes, ctx: bytes) -> dict[str, torch.Tensor]:
    """Starting values for switched-on weights: the ticket's own θ₀ when it can be rebuilt (rewind to
    0 and a recorded init seed that reproduces θ_k), else a fresh key-seeded initialization."""
    recorded = ticket.provenance
    if int(recorded.rewind_step or 0) == 0 and isinstance(recorded.init_seed, int):
        theta0 = model_from_architecture(ticket.architecture, seed=recorded.init_seed).state_dict()
        if all(torch.equal(theta0[n][m], ticket.init_state[n][m]) for n, m in ticket.mask.tensors.items()):
            return theta0
    seed = int.from_bytes(prf(key, "fresh-weights", ctx, 8), "little") >> 1
    return model_from_architecture(ticket.architecture, seed=seed).state_dict()


def plan_signature(ticket: Ticket, key: bytes, scheme: Scheme = CURRENT, salt: str | None = None) -> Plan:
    model = model_from_architecture(ticket.architecture)
    ticket.mask.check_matches(model)
    structure = analyse(model)
    salt = salt or signing_salt(key, ticket)
    ctx = context(scheme, salt, structure)
    positions, bits, order = positions_and_bits(structure, scheme, key, ctx)
    state = ticket.trained_state if ticket.trained_state is not None else ticket.init_state
    mask, init_state, changes, held = embed(structure, scheme, ticket.mask, ticket.init_state, state,
                                            rebalance_source(ticket, key, ctx), positions, layer_bits(bits, order), key, ctx)
    for name in ticket.mask.names():  # the promise: every layer keeps exactly its number of weights
        assert int(mask[name].sum()) == int(ticket.mask[name].sum()), name
    return Plan(scheme, structure, salt, ctx, positions, bits, order, mask, init_state, changes, held)


def build_claim(state: dict[str, torch.Tensor], plan: Plan, key: bytes, architecture: dict) -> dict:
    """The private claim of a signed model (its weights as a state dict), by the fixed procedure."""
    form = canonical(state, plan.structure, "the signed model")
    return {"format": CLAIM_FORMAT, "scheme": plan.scheme.version, "architecture": architecture, "salt": plan.salt,
            "alive_blocks": owner_alive_blocks(form, plan.structure),
            "sketch": make_sketch(form, plan.structure, plan.positions, key, plan.context, plan.scheme.sketch_bits),
            "nonce": prf(key, "nonce", plan.context + bytes.fromhex(weights_sha256(state)), 16).hex()}


def build_record(model_path: Path, state: dict, kind: str, claim: dict, key: bytes, anchor: str,
                 anchored_at: str) -> dict:
    scheme = scheme_of(claim["scheme"])
    return {"format": RECORD_FORMAT, "scheme": scheme.version, "architecture": claim["architecture"],
            "salt": claim["salt"], "key_commitment": key_commitment(key, claim["salt"]),
            "claim_commitment": claim_commitment(claim),
            "model": {"file": model_path.name, "kind": kind, "file_sha256": file_sha256(model_path),
                      "weights_sha256": weights_sha256(state)},
            "anchor": anchor, "anchored_at": anchored_at, "bits": scheme.bits, "triggers": scheme.triggers,
            "alpha": scheme.alpha}


def predict_labels(model) -> Callable:
    def predict(x):
        with torch.inference_mode():
            return model(x).argmax(1)
    return predict


def signed_state(ticket: Ticket) -> dict[str, torch.Tensor]:
    return attacks.weights_of(ticket)


def sign(ticket: Ticket, key: bytes, data, cfg: TrainConfig, work_dir: Path, *, per_batch: int = PER_BATCH,
         quiet: bool = True, plan: Plan | None = None, scheme: Scheme = CURRENT, floors: bool = True) -> tuple[Ticket, dict, dict]:
    """Embed the key's signature and triggers in `ticket` and retrain it from θ_k; returns the signed
    ticket, its private claim and a report. Writes only into `work_dir` (the training's checkpoints)."""
    plan = plan or plan_signature(ticket, key, scheme)
    scheme = plan.scheme
    arch = ticket.architecture
    trigger_x, trigger_y = make_triggers(key, plan.context, scheme.triggers, arch["input_shape"], arch["num_classes"])
    model = model_from_architecture(arch)
    model.load_state_dict(plan.init_state)
    hold = Floors(model, plan.structure, plan.held, scheme.floor_quantile) if floors else None
    summary = train(model, data, cfg, out_dir=work_dir, data_seed=int(ticket.provenance.data_seed or 0), mask=plan.mask,
                    start_iteration=int(ticket.provenance.rewind_step or 0), quiet=quiet, label="sign",
                    batch_hook=TriggerMixer(trigger_x, trigger_y, per_batch, before=hold))
    if hold is not None:
        hold()
        plan.mask.apply_(model)
        summary = {**summary, "test_accuracy": evaluate(model, data.test_x, data.test_y)[1]}
    model.eval()
    trigger_accuracy = float((predict_labels(model)(trigger_x) == trigger_y).float().mean())
    provenance = ticket.provenance.replace(train_config=cfg, metrics=summary)
    signed = Ticket(arch, plan.mask, plan.init_state, {k: v.detach().clone() for k, v in model.state_dict().items()},
                    provenance)
    claim = build_claim(signed_state(signed), plan, key, arch)
    unsigned = (ticket.provenance.metrics or {}).get("test_accuracy")
    report = {"scheme": scheme.version, "bits": len(plan.bits), "triggers": scheme.triggers, "alpha": scheme.alpha,
              "carriers": [plan.structure.layers[i].path for i in sorted(plan.positions)],
              "bits_per_carrier": {plan.structure.layers[i].path: len(p) for i, p in sorted(plan.positions.items())},
              "killed_units": sum(c["killed_blocks"] for c in plan.changes.values()),
              "killed_blocks": sum(c["killed_blocks"] for c in plan.changes.values()),
              "revived_blocks": sum(c["revived_blocks"] for c in plan.changes.values()),
              "repaired_units": sum(c["repaired_units"] for c in plan.changes.values()),
              "rebalanced_weights": sum(c["rebalanced_weights"] for c in plan.changes.values()),
              "density": plan.mask.density(), "test_accuracy": summary["test_accuracy"],
              "unsigned_test_accuracy": unsigned, "trigger_accuracy": trigger_accuracy}
    return signed, claim, report


def sign_job(ticket_path: str | Path, key_path: str | Path, out: str | Path, claim_path: str | Path | None = None, *,
             bits: int | None = None, carriers: str | None = None, triggers: int | None = None,
             per_batch: int = PER_BATCH, significance: float | None = None, overrides: dict | None = None,
             data_root: str | None = None, quiet: bool = True, record_path: str | Path | None = None,
             anchor: str = "", anchored_at: str | None = None) -> dict:
    """Sign a ticket: writes the signed ticket, its private claim (OUT.claim.json: keep it with the key)
    and its registration record (OUT.record.json: publish it). `bits`, `carriers`, `triggers` and
    `significance` are fixed by the scheme; they are accepted only at the scheme's values."""
    out = Path(out)
    claim_path = Path(claim_path) if claim_path else companion(out, ".claim.json")
    record_path = Path(record_path) if record_path else companion(out, ".record.json")
    check_outputs(out, claim_path, record_path, inputs=(Path(ticket_path), Path(key_path)))
    check_scheme_options(CURRENT, bits, carriers, triggers, significance)
    check_anchor(anchor, anchored_at)
    if per_batch < 1 or per_batch > 100_000:
        raise TicketlabError(f"--triggers-per-batch must be from 1 to 100,000 (got {per_batch})")
    key = read_key(key_path)
    ticket = load_ticket(ticket_path)
    cfg = recipe(ticket, overrides or {})
    plan = plan_signature(ticket, key)
    data = load_ticket_data(ticket, data_root)
    check_recipe_data(cfg, ticket, data)
    for target in (out, timings_path(out), claim_path, record_path):  # what writers of a killed run left
        remove_stale_temporaries(target.parent, [target.name])
    work = work_folder(out, "signing", {"ticket": read_metadata(ticket_path)["checksum"], "key": key_fingerprint(key),
                                        "scheme": plan.scheme.version, "per_batch": per_batch,
                                        "train": dataclasses.asdict(cfg)})
    signed, claim, report = sign(ticket, key, data, cfg, work, per_batch=per_batch, quiet=quiet, plan=plan)
    signed.save(out)
    write_claim(claim_path, claim)
    record = build_record(out, signed_state(signed), "ticket", claim, key, anchor, anchored_at or now())
    write_record(record_path, record)
    shutil.rmtree(work, ignore_errors=True)
    return {"ticket": str(out), "claim": str(claim_path), "record": str(record_path), **report,
            "commitment": record["claim_commitment"], "key_commitment": record["key_commitment"],
            "anchored_at": record["anchored_at"]}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_anchor(anchor: str, anchored_at: str | None) -> None:
    if not isinstance(anchor, str) or len(anchor) > 4096 or any(ord(c) < 32 for c in anchor):
        raise TicketlabError("--anchor must be one line of text (a git commit, a transparency-log entry), at most 4096 characters")
    if anchored_at is not None:
        parse_time(anchored_at, "--anchored-at")


def parse_time(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise TicketlabError(f"{what} {text!r} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00+00:00") from None
    if moment.tzinfo is None:
        raise TicketlabError(f"{what} {text!r} has no time zone; write it with one, e.g. 2026-01-31T12:00:00+00:00")
    return moment


# ---- register --------------------------------------------------------------------------------

def claim_fit(state: dict[str, torch.Tensor], record: dict, claim: dict, key: bytes) -> dict:
    """Is the claim what the fixed procedure computes from this (registered) model? Its K per carrier
    recomputed exactly and its sketch bits reproduced (the model aligned to the claim first, so that a
    permuted or shrunk export of the same model fits)."""
    scheme, structure, ctx = derivation(record, key)
    positions, _, _ = positions_and_bits(structure, scheme, key, ctx)
    form = canonical(state, structure, "the registered model")
    maps = align(form, structure, claim["sketch"], positions, key, ctx, scheme.sketch_bits)
    alive = owner_alive_blocks(form, structure)
    by_part = {(e["layer"], e["side"]): e for e in claim["sketch"]}
    same = total = 0
    for site, layer, side in parts(structure):
        l = structure.layers[layer]
        other = maps.get(l.in_site if side == "rows" else l.out_site) if (l.in_site if side == "rows" else l.out_site) is not None else None
        x = descriptors(form, structure, layer, side, other)
        mapping = maps.get(site)
        present = mapping >= 0
        owner_x = torch.zeros(len(mapping), x.shape[1], dtype=x.dtype)
        owner_x[present] = x[mapping[present]]
        for unit, cols in exclusions(structure, layer, side, positions, len(mapping)).items():
            owner_x[unit, cols] = 0
        P = projection(key, ctx, structure, layer, side, x.shape[1], scheme.sketch_bits)
        signs = torch.where((owner_x @ P.T) >= 0, 1.0, -1.0).double()
        stored = unpack_sketch(by_part[(l.path, side)])
        same += int((signs[present] == stored[present]).sum())
        total += int(present.sum()) * stored.shape[1]
    share = same / total if total else 0.0
    alive_ok = alive == claim["alive_blocks"]
    return {"claim_fits_model": bool(alive_ok and share >= CLAIM_FIT), "sketch_reproduced": share,
            "alive_blocks_reproduced": alive_ok}


def registration_problems(model_path: Path, record: dict, claim: dict, key: bytes) -> tuple[dict, dict]:
    """Checks of a registration against the model it registers: (checks by name, the model's state)."""
    state, _ = load_model(model_path, record["architecture"])
    checks_ = registration_checks(record, claim, key)
    checks_["model_file"] = file_sha256(model_path) == record["model"]["file_sha256"]
    fit = claim_fit(state, record, claim, key)
    checks_["claim_fits_model"] = fit["claim_fits_model"]
    return checks_, state


def register_job(model_path: str | Path, claim_path: str | Path, key_path: str | Path, out: str | Path | None = None,
                 *, anchor: str = "", anchored_at: str | None = None) -> dict:
    """Write the registration record of a released model file (a ticket, a safetensors or .pt state_dict,
    or an ONNX export of the signed ticket): the model must carry the claim's signature and reproduce it."""
    model_path = Path(model_path)
    out = Path(out) if out else companion(model_path, ".record.json")
    check_outputs(out, inputs=(model_path, Path(claim_path), Path(key_path)))
    check_anchor(anchor, anchored_at)
    key = read_key(key_path)
    claim = read_claim(claim_path)
    scheme_of(claim["scheme"])
    state, kind = load_model(model_path, claim["architecture"])
    provisional = build_record(model_path, state, kind, claim, key, anchor, anchored_at or now())
    fit = claim_fit(state, provisional, claim, key)
    if not fit["claim_fits_model"]:
        raise TicketlabError(f"{model_path} is not the model claim {claim_path} was made from (it reproduces "
                             f"{100 * fit['sketch_reproduced']:.1f} % of the claim's sketch); register the signed model "
                             "or an export of it")
    result = whitebox(state, provisional, claim, key)
    if not result["verified"]:
        raise TicketlabError(f"{model_path} does not carry the claim's signature (p = {result['p_value']:.3g}); "
                             "register the signed model or an export of it")
    write_record(out, provisional)
    return {"record": str(out), "model": str(model_path), "kind": kind, "file_sha256": provisional["model"]["file_sha256"],
            "anchor": anchor, "anchored_at": provisional["anchored_at"], "agreeing_bits": result["agreeing_bits"],
            "bits": result["bits"], "p_value": result["p_value"]}


# ---- verify ----------------------------------------------------------------------------------

def record_beside(claim_path: Path) -> Path:
    return companion(Path(claim_path), ".record.json")


def verify_job(suspect: str | Path, key_path: str | Path, claim_path: str | Path | None, black_box: bool = False,
               torchscript: bool = False, *, record_path: str | Path | None = None,
               registered: str | Path | None = None) -> dict:
    """Does `suspect` carry the signature of (record, claim, key)? `record_path` defaults to the record
    beside the claim. `registered` (the owner's registered model file) adds the checks that the record
    names that file and that the claim is what the fixed procedure computes from it. Black-box needs
    only the record and the key. `torchscript=True` (black-box) allows a TorchScript suspect, whose
    loading runs code from it."""
    if claim_path is None and record_path is None:
        raise TicketlabError("give the record (--record) and, for white-box verification, the claim (--claim)")
    key = read_key(key_path)
    loaded = exported(suspect, torchscript) if black_box else None  # a file it cannot run: say so first
    claim = read_claim(claim_path) if claim_path is not None else None
    record_path = Path(record_path) if record_path else record_beside(Path(claim_path))
    record = read_record(record_path)
    scheme_of(record["scheme"])
    extra = {}
    if registered is not None:
        checks_, _ = registration_problems(Path(registered), record, claim, key) if claim is not None else ({}, None)
        extra["registration"] = checks_
    if black_box:
        result = blackbox(suspect_predictor(suspect, record, loaded), record, claim, key)
    else:
        if claim is None:
            raise TicketlabError("white-box verification needs the private claim (--claim); black-box needs only the record")
        state, _ = load_model(suspect, record["architecture"])
        result = whitebox(state, record, claim, key)
    if extra.get("registration") and not all(extra["registration"].values()):
        result["verified"] = False
        result["failed_checks"] = result.get("failed_checks", []) + [k for k, v in extra["registration"].items() if not v]
        result["registration_ok"] = result["commitment_ok"] = False
    return {"suspect": str(suspect), "claim": str(claim_path) if claim_path else None, "record": str(record_path),
            **result, **extra}


def exported(suspect: str | Path, torchscript: bool):
    """The suspect as a runnable export, or None for a plain state dict (safetensors or .pt), which
    runs once the record says what model it is."""
    try:
        return load_exported(suspect, torchscript=torchscript)
    except TicketlabError:
        path = Path(suspect)
        if path.is_file() and path.suffix.lower() in (".pt", ".pth") and not is_torchscript(path):
            try:
                torch.load(path, map_location="cpu", weights_only=True)
                return None
            except Exception:  # noqa: BLE001 - not a plain state dict: the export error says what to do
                pass
        elif path.is_file():
            try:
                from safetensors import safe_open
                with safe_open(str(path), "pt") as f:
                    if "ticketlab" not in (f.metadata() or {}):
                        return None
            except Exception:  # noqa: BLE001 - not safetensors either
                pass
        raise


def suspect_predictor(suspect: str | Path, record: dict, loaded=None) -> Callable:
    """A labelling function for an export (ticket, compact, dense, TorchScript, ONNX: `loaded`) or a plain
    state dict of the record's architecture (`loaded` None)."""
    shape = tuple(record["architecture"]["input_shape"])
    if loaded is None:
        state, kind = load_model(suspect, record["architecture"])
        model = model_from_architecture(record["architecture"])
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise TicketlabError(f"{suspect} is a {kind} state_dict that does not fit {record['architecture']['name']} "
                                 "(a shrunk state_dict runs only as an export); give a ticket or an export") from None
        model.eval()
        return predict_labels(model)
    if loaded.input_shape and tuple(loaded.input_shape) != shape:
        raise TicketlabError(f"{suspect} takes inputs {tuple(loaded.input_shape)}, the record's model {shape}; "
                             "give the record made for this model")
    if loaded.normalization is not None:  # the export takes raw inputs: undo the standardization of x
        mean, std = loaded.normalization
        return lambda x: torch.as_tensor(loaded.run(x * std + mean)).argmax(1)
    return lambda x: torch.as_tensor(loaded.run(x)).argmax(1)


# ---- dispute -----------------------------------------------------------------------------------

def dispute(a: dict, b: dict) -> dict:
    """Decide between two parties, each {"model": path of the model they registered, "record", "claim",
    "key"} (record and claim as dicts, key as bytes). Each party's registration is checked against its
    own model; then each signature is tested in the other's model. The owner is the party whose
    signature is in the other's model while the other's is not in theirs, and whose record is earlier;
    when both signatures are in both models, the earlier record wins."""
    parties = {"a": a, "b": b}
    report: dict = {}
    states = {}
    for name, party in parties.items():
        checks_, state = registration_problems(Path(party["model"]), party["record"], party["claim"], party["key"])
        states[name] = state
        own = whitebox(state, party["record"], party["claim"], party["key"])
        checks_["signature_in_own_model"] = own["verified"]
        report[name] = {"checks": checks_, "valid": all(checks_.values()), "own_p_value": own["p_value"],
                        "anchored_at": party["record"]["anchored_at"], "anchor": party["record"]["anchor"]}
    for name, other in (("a", "b"), ("b", "a")):
        result = whitebox(states[other], parties[name]["record"], parties[name]["claim"], parties[name]["key"])
        report[name]["signature_in_other_model"] = result["verified"]
        report[name]["other_p_value"] = result["p_value"]
        report[name]["other_agreement"] = result["agreement"]
    report["same_weights"] = parties["a"]["record"]["model"]["weights_sha256"] == parties["b"]["record"]["model"]["weights_sha256"]
    report.update(decide_dispute(report))
    return report


def decide_dispute(report: dict) -> dict:
    a, b = report["a"], report["b"]
    if not a["valid"] and not b["valid"]:
        return {"owner": None, "reason": "neither registration holds (see checks)"}
    if a["valid"] != b["valid"]:
        winner = "a" if a["valid"] else "b"
        other = "b" if winner == "a" else "a"
        failed = [k for k, v in report[other]["checks"].items() if not v]
        return {"owner": winner if report[winner]["signature_in_other_model"] else None,
                "reason": f"{other}'s registration fails ({', '.join(failed)})"
                          + ("" if report[winner]["signature_in_other_model"]
                             else f"; {winner}'s signature is not in {other}'s model either: no relation shown")}
    times = {name: parse_time(report[name]["anchored_at"], f"{name}'s anchored_at") if report[name]["anchored_at"]
             else None for name in ("a", "b")}
    earlier = None
    if times["a"] and times["b"] and times["a"] != times["b"]:
        earlier = "a" if times["a"] < times["b"] else "b"
    in_b, in_a = a["signature_in_other_model"], b["signature_in_other_model"]
    if in_b and not in_a:
        candidate = "a"
    elif in_a and not in_b:
        candidate = "b"
    elif in_a and in_b:
        if earlier is None:
            return {"owner": None, "reason": "each signature is in both models and the records do not tell which is earlier"}
        return {"owner": earlier, "reason": "each signature is in both models; the earlier record wins"}
    else:
        return {"owner": None, "reason": "neither signature is in the other's model: independent models"}
    other = "b" if candidate == "a" else "a"
    if earlier == other:
        return {"owner": None, "reason": f"{candidate}'s signature is in {other}'s model but {other}'s record is earlier: "
                                         "contradictory evidence, check the anchors"}
    return {"owner": candidate, "reason": f"{candidate}'s signature is in {other}'s model, {other}'s is not in "
                                          f"{candidate}'s" + ("" if earlier is None else f", and {candidate}'s record is earlier")}


def dispute_job(a_model: str | Path, a_record: str | Path, a_claim: str | Path, a_key: str | Path,
                b_model: str | Path, b_record: str | Path, b_claim: str | Path, b_key: str | Path) -> dict:
    parties = {}
    for name, (model, record, claim, key) in {"a": (a_model, a_record, a_claim, a_key),
                                              "b": (b_model, b_record, b_claim, b_key)}.items():
        parties[name] = {"model": str(model), "record": read_record(record), "claim": read_claim(claim),
                         "key": read_key(key)}
    report = dispute(parties["a"], parties["b"])
    for name in ("a", "b"):
        report[name]["model"] = parties[name]["model"]
    return report


# ---- attack ----------------------------------------------------------------------------------

def test_accuracy(ticket: Ticket, data) -> float:
    return evaluate(ticket_model(ticket), data.test_x, data.test_y)[1]


def forger_paths(out: Path) -> tuple[Path, Path, Path]:
    stem = out.name.removesuffix(".safetensors")
    return (out.with_name(stem + ".forger.key"), out.with_name(stem + ".forger.claim.json"),
            out.with_name(stem + ".forger.record.json"))


def forge(ticket: Ticket, signed_path, data, cfg: TrainConfig, out: Path, seed: int, quiet: bool) -> tuple[Ticket, dict]:
    """The ambiguity attack: a new key signs the stolen ticket and retrains it. Returns the forged
    ticket and what to write (the forger's key and claim stay in memory until the ticket is saved)."""
    key = generate_key()
    plan = plan_signature(ticket, key)
    work = work_folder(out, "forging", {"ticket": read_metadata(signed_path)["checksum"], "seed": seed,
                                        "key": key_fingerprint(key)})
    forged, claim, report = sign(ticket, key, data, cfg, work, plan=plan, quiet=quiet)
    shutil.rmtree(work, ignore_errors=True)
    forged.provenance.extra["attack"] = {"kind": "forge", "strength": len(plan.bits)}
    key_path, claim_path, record_path = forger_paths(out)
    return forged, {"forger_key": str(key_path), "forger_claim": str(claim_path), "forger_record": str(record_path),
                    "forger_trigger_accuracy": report["trigger_accuracy"], "key": key, "claim": claim}


def attack_job(signed_path: str | Path, kind: str, strength: float | None, out: str | Path, *, seed: int = 0,
               keep_mask: bool = True, scale: float = attacks.DEFAULT_DENSIFY_SCALE, overrides: dict | None = None,
               data_root: str | None = None, quiet: bool = True, output_format: str = "ticket") -> dict:
    """Attack a signed ticket and write the result: a ticket (default), a plain safetensors state_dict
    (`output_format="safetensors"`) or an ONNX file (`"onnx"`), as a thief would publish it."""
    strength = attacks.check_strength(kind, strength)
    out = Path(out)
    if output_format not in ("ticket", "safetensors", "onnx"):
        raise TicketlabError(f"--format {output_format!r}: give ticket, safetensors or onnx")
    if kind == "forge" and output_format != "ticket":
        raise TicketlabError("a forged ticket is written as a ticket (its record names that file); drop --format")
    extra_outputs = forger_paths(out) if kind == "forge" else ()
    check_outputs(out, *extra_outputs, inputs=(Path(signed_path),))
    if kind == "forge" and extra_outputs[0].exists():
        raise TicketlabError(f"{extra_outputs[0]} already exists; a key file is never overwritten, choose another --out")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise TicketlabError(f"--scale must be a positive finite number, got {scale!r}")
    checks.seed("--seed", seed)
    ticket = load_ticket(signed_path)
    if kind in ("permute", "rescale", "disguise", "forge"):
        analyse(model_from_architecture(ticket.architecture))  # a model that torch.fx can trace?
    trains = kind in ("finetune", "forge", "reprune", "distill")
    cfg = recipe(ticket, overrides or {}) if trains else None
    data = load_ticket_data(ticket, data_root)
    if kind == "forge":
        check_recipe_data(cfg, ticket, data)
    elif trains:
        checks.check_training_data(dataclasses.replace(cfg, steps="1it", eval_every="1it"), len(data.train_y), data.name)
    generator = torch.Generator().manual_seed(derive_seed(seed, f"attack:{kind}"))
    result = {"kind": kind, "strength": strength, "seed": seed, "format": output_format,
              "signed_test_accuracy": (ticket.provenance.metrics or {}).get("test_accuracy")}
    identity = {"ticket": read_metadata(signed_path)["checksum"], "kind": kind, "strength": strength,
                "keep_mask": keep_mask, "seed": seed, "train": dataclasses.asdict(cfg) if cfg else None}
    if kind in ("prune-magnitude", "prune-random"):
        attacked = attacks.prune(ticket, strength, kind.removeprefix("prune-"), generator)
    elif kind == "densify":
        attacked = attacks.densify(ticket, strength, scale, generator)
    elif kind == "permute":
        attacked = attacks.permute(ticket, strength, generator)
    elif kind == "rescale":
        attacked = attacks.rescale(ticket, strength, generator)
    elif kind == "disguise":
        attacked = attacks.disguise(ticket, strength, generator)
    elif kind == "shrink":
        attacked = attacks.shrink(ticket)
    elif kind in ("finetune", "reprune", "distill"):
        work = work_folder(out, kind, identity)
        if kind == "finetune":
            attacked, _ = attacks.finetune(ticket, data, cfg, strength, keep_mask, work, derive_seed(seed, "attack-data"), quiet)
            result.update(keep_mask=keep_mask)
        elif kind == "reprune":
            attacked, _ = attacks.reprune(ticket, data, cfg, strength, work, derive_seed(seed, "attack-data"), quiet)
        else:
            attacked, _ = attacks.distill(ticket, data, cfg, strength, work, derive_seed(seed, "attack-init"), quiet)
        shutil.rmtree(work, ignore_errors=True)
        result.update(lr=cfg.lr)
    else:
        attacked, forged = forge(ticket, signed_path, data, cfg, out, seed, quiet)
        forger_key, forger_claim = forged.pop("key"), forged.pop("claim")
        result.update(forged)
    accuracy = test_accuracy(attacked, data)
    write_attacked(attacked, out, output_format)
    if kind == "forge":  # the forger's key, claim and record, once the forged ticket is in place
        write_key(result["forger_key"], forger_key)
        write_claim(result["forger_claim"], forger_claim)
        record = build_record(out, signed_state(attacked), "ticket", forger_claim, forger_key, "", now())
        write_record(result["forger_record"], record)
    return {"ticket": str(out), "test_accuracy": accuracy, "density": attacked.mask.density(), **result}


def write_attacked(ticket: Ticket, out: Path, output_format: str) -> None:
    if output_format == "ticket":
        ticket.save(out)
        return
    model = ticket_model(ticket).eval()
    if output_format == "safetensors":
        from safetensors.torch import save as save_bytes

        write_bytes(out, save_bytes({k: v.detach().contiguous() for k, v in model.state_dict().items()}))
        return
    export_onnx(model, ticket.architecture["input_shape"], out)
