"""Ownership on tiny models: the derivations, signing, registration, verification that free
transformations and re-packaging cannot fool, claims and records that cannot be gamed, disputes."""

import base64
import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab.config import DataConfig, TrainConfig
from ticketlab.deploy.export import export_ticket, ticket_model
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import create_model, model_from_architecture
from ticketlab.models.registry import prunable_names
from ticketlab.ownership import attacks, jobs
from ticketlab.ownership.claim import claim_commitment, read_claim, read_record
from ticketlab.ownership.keys import key_commitment, prf_bits, prf_sample, read_key
from ticketlab.ownership.scheme import CURRENT
from ticketlab.ownership.structure import analyse, require_carriers
from ticketlab.ownership.triggers import TriggerMixer, make_triggers
from ticketlab.ownership.verification import binomial_p_value, blackbox, read_signature, registration_checks, whitebox
from ticketlab.provenance import Provenance
from ticketlab.runtime import load_data_config
from ticketlab.ticket import Ticket, load_ticket
from ticketlab.trainer import CHECKPOINT, train

MODEL = "mlp_128_64"
NULLS = 10


def make_ticket(folder: Path, seed: int, steps: int = 150, density: float = 0.3, model: str = MODEL) -> Path:
    """A magnitude-pruned, trained ticket of `model` on the synthetic set, with its provenance."""
    data_config = DataConfig(dataset="synthetic", train_subset=600)
    data = load_data_config(data_config)
    cfg = TrainConfig(optimizer="adam", lr=0.01, batch_size=32, steps=f"{steps}it", eval_every=f"{steps}it")
    net = create_model(model, data.input_shape, data.num_classes, seed=seed)
    theta0 = {k: v.clone() for k, v in net.state_dict().items()}
    train(net, data, cfg, out_dir=folder / f"dense-{seed}", data_seed=seed, quiet=True)
    params = dict(net.named_parameters())
    keep = {}
    for name in prunable_names(net):
        w = params[name].detach().abs().reshape(-1)
        flat = torch.zeros_like(w, dtype=torch.bool)
        flat[torch.argsort(w, descending=True)[:round(density * w.numel())]] = True
        keep[name] = flat.reshape(params[name].shape)
    mask = Mask(keep)
    net.load_state_dict(theta0)
    summary = train(net, data, cfg, out_dir=folder / f"ticket-{seed}", data_seed=seed, mask=mask, quiet=True)
    provenance = Provenance(dataset="synthetic", data_config=data_config, train_config=cfg, method="magnitude",
                            seed=seed, init_seed=seed, data_seed=seed, rewind_step=0, metrics=summary)
    init = {k: (v * mask[k] if k in mask.tensors else v) for k, v in theta0.items()}
    path = folder / f"ticket-{seed}.safetensors"
    Ticket(net.architecture, mask, init, {k: v.detach().clone() for k, v in net.state_dict().items()}, provenance).save(path)
    return path


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """A signed mlp_128_64 ticket with its claim, record and key, and independently found tickets."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("owner")
    ticket = make_ticket(root, 0)
    nulls = [make_ticket(root, 100 + s, steps=60) for s in range(NULLS)]
    jobs.keygen_job(root / "owner.key")
    signed = jobs.sign_job(ticket, root / "owner.key", root / "signed.safetensors", overrides={"steps": "200it"},
                           anchor="git:0123abcd", anchored_at="2026-01-01T00:00:00+00:00")
    key = read_key(root / "owner.key")
    yield {**signed, "root": root, "unsigned": ticket, "nulls": nulls, "key_path": root / "owner.key", "key": key,
           "record_dict": read_record(signed["record"]), "claim_dict": read_claim(signed["claim"])}
    torch.set_num_threads(threads)


def state_of(path) -> dict:
    return attacks.weights_of(load_ticket(path))


def accepted(state, record, claim, key) -> bool:
    """Does white-box verification accept? A registration that does not even fit the model is refused."""
    try:
        return whitebox(state, record, claim, key)["verified"]
    except TicketlabError:
        return False


# ---- the derivations and the scheme ----------------------------------------------------------------

def test_keyed_derivations_are_deterministic_distinct_and_bound_to_their_context():
    key, other = bytes(range(32)), bytes(range(1, 33))
    a = prf_bits(key, "bits", b"ctx", 512)
    assert (a == prf_bits(key, "bits", b"ctx", 512)).all() and 200 < a.sum() < 312
    assert 180 < (a != prf_bits(other, "bits", b"ctx", 512)).sum() < 330
    assert (a != prf_bits(key, "bits", b"other context", 512)).any()
    sample = prf_sample(key, "positions", b"ctx", 1000, 500)
    assert len(set(sample.tolist())) == 500 and sample.min() >= 0 and sample.max() < 1000
    assert (sample == prf_sample(key, "positions", b"ctx", 1000, 500)).all()
    assert key_commitment(key, "00" * 16) != key_commitment(other, "00" * 16) != key_commitment(key, "11" * 16)


def test_the_level_covers_a_search_of_2_to_the_40_tries():
    assert CURRENT.alpha == pytest.approx(1e-6 / 2 ** 40) and CURRENT.alpha < 1e-18
    assert CURRENT.bits == 1024 and CURRENT.triggers == 256
    # 652 of 1024 agreeing bits is the least that reaches the level; 651 is not enough
    assert binomial_p_value(652, 1024, 0.5)[0] <= CURRENT.alpha < binomial_p_value(651, 1024, 0.5)[0]
    assert binomial_p_value(355, 512, 0.5)[0] <= CURRENT.alpha < binomial_p_value(354, 512, 0.5)[0]
    assert binomial_p_value(0, 10, 0.5)[0] == 1.0


def test_a_million_keys_against_fixed_readings_come_nowhere_near_the_level():
    readings = np.random.default_rng(1).integers(0, 2, CURRENT.bits).astype(bool)
    search = attacks.best_of_keys(readings, 10 ** 6)
    assert search["keys"] == 10 ** 6 and search["best_agreeing_bits"] < 0.6 * CURRENT.bits
    assert search["best_log10_p_value"] > -9 > math.log10(CURRENT.alpha) + 9


# ---- signing and verifying ---------------------------------------------------------------------------

def test_signing_keeps_every_layer_density_and_the_owner_verifies(owner):
    before, after = load_ticket(owner["unsigned"]), load_ticket(owner["ticket"])
    for name in before.mask.names():
        assert int(after.mask[name].sum()) == int(before.mask[name].sum()), name
    assert not before.mask.equals(after.mask) and owner["killed_blocks"] > 0
    assert sum(owner["bits_per_carrier"].values()) == CURRENT.bits and len(owner["bits_per_carrier"]) == 3
    result = jobs.verify_job(owner["ticket"], owner["key_path"], owner["claim"])
    assert result["verified"] and result["agreeing_bits"] >= 0.97 * CURRENT.bits and result["p_value"] <= CURRENT.alpha
    assert result["registration_ok"] and result["alpha"] == CURRENT.alpha
    # black-box: the record and the key are enough
    result = jobs.verify_job(owner["ticket"], owner["key_path"], None, True, record_path=owner["record"])
    assert result["verified"] and result["chance"] == pytest.approx(0.1)


def test_the_same_signing_gives_the_same_files(owner, tmp_path):
    again = jobs.sign_job(owner["unsigned"], owner["key_path"], tmp_path / "signed.safetensors",
                          overrides={"steps": "200it"}, anchor="git:0123abcd", anchored_at="2026-01-01T00:00:00+00:00")
    assert Path(again["ticket"]).read_bytes() == Path(owner["ticket"]).read_bytes()
    assert Path(again["claim"]).read_bytes() == Path(owner["claim"]).read_bytes()
    assert read_record(again["record"]) == {**owner["record_dict"], "model": {**owner["record_dict"]["model"]}}
    assert not list(tmp_path.glob(".*"))  # the retraining's work folder is gone


def test_the_record_is_small_and_public_and_the_claim_holds_no_positions_bits_weights_or_key(owner):
    record, claim = owner["record_dict"], owner["claim_dict"]
    text = Path(owner["record"]).read_text() + Path(owner["claim"]).read_text()
    assert owner["key"].hex() not in text and "positions" not in text and "significance" not in text
    assert len(Path(owner["record"]).read_bytes()) < 2048
    assert set(record) == {"format", "scheme", "architecture", "salt", "key_commitment", "claim_commitment", "model",
                           "anchor", "anchored_at", "bits", "triggers", "alpha"}
    assert record["anchor"] == "git:0123abcd" and record["claim_commitment"] == claim_commitment(claim)
    assert set(claim) == {"format", "scheme", "architecture", "salt", "alive_blocks", "sketch", "nonce"}
    for entry in claim["sketch"]:  # sign bits only: a few bits per unit, far fewer than its weights
        assert len(base64.b64decode(entry["data"])) == entry["units"] * math.ceil(entry["bits"] / 8)
        assert entry["bits"] <= CURRENT.sketch_bits


def test_independent_tickets_do_not_verify_and_agree_by_chance(owner):
    agreements = []
    for path in owner["nulls"]:
        result = whitebox(state_of(path), owner["record_dict"], owner["claim_dict"], owner["key"])
        assert not result["verified"] and result["p_value"] > 1e-6
        agreements.append(result["agreement"])
        assert not blackbox(ticket_model(load_ticket(path)), owner["record_dict"], None, owner["key"])["verified"]
    assert 0.45 < np.mean(agreements) < 0.55
    # the unsigned parent does not carry the signature either
    assert not whitebox(state_of(owner["unsigned"]), owner["record_dict"], owner["claim_dict"], owner["key"])["verified"]


# ---- claims and records that cannot be gamed ------------------------------------------------------

def test_no_forged_claim_verifies_the_owners_model_for_a_thief(owner, tmp_path):
    """A thief holds the signed ticket and a key of their own, and writes the best claim and record
    they can: computed from the owner's model with their key, consistent commitments."""
    state = state_of(owner["ticket"])
    thief_key = bytes(range(100, 132))
    plan = jobs.plan_signature(load_ticket(owner["ticket"]), thief_key)
    claim = jobs.build_claim(state, plan, thief_key, owner["record_dict"]["architecture"])
    record = jobs.build_record(Path(owner["ticket"]), state, "ticket", claim, thief_key, "", "2025-01-01T00:00:00+00:00")
    genuine = whitebox(state, record, claim, thief_key)
    assert genuine["registration_ok"] and not genuine["verified"] and genuine["p_value"] > 1e-6
    for what, forged_record, forged_claim in attacks.forged_claims(record, claim):
        assert not accepted(state, forged_record, forged_claim, thief_key), what
    # a key search against the owner's model: readings at the thief's positions, a million other keys
    readings, _, _ = read_signature(state, record, claim, thief_key)
    assert attacks.best_of_keys(readings, 10 ** 6)["best_p_value"] > 1e6 * CURRENT.alpha


def test_an_owner_who_rewrites_claim_fields_verifies_none_of_ten_independent_tickets(owner):
    record, claim, key = owner["record_dict"], owner["claim_dict"], owner["key"]
    rewritten = attacks.forged_claims(record, claim)
    # ...and fields rewritten with both commitments recomputed (a new record: another salt, other K)
    registered = [("the genuine registration", record, claim)]
    for salt in ("ab" * 16, "cd" * 16, "ef" * 16):
        new_claim = {**claim, "salt": salt, "alive_blocks": {k: v // 2 for k, v in claim["alive_blocks"].items()}}
        registered.append(("re-registered with another salt and K", {**record, "salt": salt,
                           "key_commitment": key_commitment(key, salt), "claim_commitment": claim_commitment(new_claim)},
                           new_claim))
    assert len(owner["nulls"]) >= 10
    verified = 0
    for n, path in enumerate(owner["nulls"]):
        state = state_of(path)
        for what, forged_record, forged_claim in registered:
            verified += accepted(state, forged_record, forged_claim, key)
        for what, forged_record, forged_claim in rewritten:
            # a rewritten field breaks a commitment: refused before any reading (read in full once per field)
            if n == 0:
                verified += accepted(state, forged_record, forged_claim, key)
            checks = registration_checks(forged_record, forged_claim, key)
            assert not all(checks.values()), what
    assert verified == 0
    # on the owner's own model too, every rewritten field is refused
    state = state_of(owner["ticket"])
    for what, forged_record, forged_claim in rewritten:
        assert not accepted(state, forged_record, forged_claim, key), what


def test_a_version_1_claim_is_refused_in_one_line(tmp_path):
    legacy = {"format": "ticketlab-ownership-claim", "version": 1, "ticket_id": "ab" * 32, "timestamp": "2024-01-01",
              "commitment": "00", "bits": 64, "triggers": 10, "significance": 0.99,
              "architecture": {"name": "mlp_32_16", "input_shape": [20], "num_classes": 10},
              "carriers": [{"layer": "hidden.0.weight"}], "reference": {"data": "", "sha256": ""}}
    (tmp_path / "old.claim.json").write_text(json.dumps(legacy))
    with pytest.raises(TicketlabError, match="no longer accepted"):
        read_claim(tmp_path / "old.claim.json")


# ---- free transformations and re-packaging ------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["ticket", "safetensors", "onnx"])
def test_the_owner_verifies_a_rescaled_permuted_densified_copy_in_any_package(owner, tmp_path, fmt):
    out = tmp_path / ("copy.onnx" if fmt == "onnx" else "copy.safetensors")
    attacked = jobs.attack_job(owner["ticket"], "disguise", 1e4, out, seed=3, output_format=fmt)
    assert attacked["test_accuracy"] == pytest.approx(owner["test_accuracy"], abs=0.01)
    result = jobs.verify_job(out, owner["key_path"], owner["claim"])
    assert result["verified"] and result["agreeing_bits"] >= 0.95 * CURRENT.bits, result
    assert jobs.verify_job(out, owner["key_path"], owner["claim"], True)["verified"]


@pytest.mark.parametrize("fmt", ["dense", pytest.param("onnx", marks=pytest.mark.slow)])
def test_the_owner_verifies_the_deployable_export_that_takes_raw_inputs(owner, tmp_path, fmt):
    """`ticketlab export` folds the input standardization in: both tests read the network behind it."""
    out = tmp_path / ("export.onnx" if fmt == "onnx" else "export.safetensors")
    assert export_ticket(owner["ticket"], fmt, out)["inputs"] == "raw"
    assert jobs.verify_job(out, owner["key_path"], owner["claim"])["verified"]
    assert jobs.verify_job(out, owner["key_path"], owner["claim"], True)["verified"]


def test_rescaling_and_permutation_keep_the_function_and_the_canonical_form(owner):
    ticket = load_ticket(owner["ticket"])
    generator = torch.Generator().manual_seed(0)
    moved = attacks.permute(attacks.rescale(ticket, 1e4, generator), 1.0, generator)
    x = torch.randn(64, 20, generator=generator)
    with torch.no_grad():
        before, after = ticket_model(ticket)(x), ticket_model(moved)(x)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4 * float(before.abs().max()))
    scales = [float(t.trained_state["hidden.0.weight"].abs().max()) for t in (ticket, moved)]
    assert scales[0] != pytest.approx(scales[1], rel=0.5)  # the weights themselves are far apart


def test_a_physically_shrunk_copy_verifies(owner, tmp_path):
    jobs.attack_job(owner["ticket"], "shrink", None, tmp_path / "small.safetensors", output_format="safetensors")
    result = jobs.verify_job(tmp_path / "small.safetensors", owner["key_path"], owner["claim"])
    assert result["verified"], result


def test_pruned_and_finetuned_copies_verify(owner, tmp_path):
    for kind, strength, keep in (("prune-magnitude", 0.5, True), ("finetune", 2, False), ("densify", 1.0, True)):
        out = tmp_path / f"{kind}.safetensors"
        jobs.attack_job(owner["ticket"], kind, strength, out, keep_mask=keep)
        result = jobs.verify_job(out, owner["key_path"], owner["claim"])
        assert result["verified"], (kind, result)


def test_a_distilled_model_of_the_thiefs_own_mask_is_a_new_model(owner, tmp_path):
    attacked = jobs.attack_job(owner["ticket"], "distill", 2, tmp_path / "student.safetensors")
    assert attacked["test_accuracy"] > 0.5
    result = jobs.verify_job(tmp_path / "student.safetensors", owner["key_path"], owner["claim"])
    assert not result["verified"] and result["p_value"] > 1e-6  # white-box is about weights: it is gone


# ---- the claim discloses nothing usable ------------------------------------------------------------------

def test_a_model_rebuilt_from_the_claim_alone_is_no_better_than_a_random_ticket(owner):
    """Without the key the sketch's projections are unknown: the best a holder of the claim can do is
    read its sign bits against projections of their own. The result is as good as a random ticket."""
    from ticketlab.data import load_dataset
    from ticketlab.trainer import evaluate
    data = load_dataset("synthetic", train_subset=600)
    claim = owner["claim_dict"]
    architecture = claim["architecture"]
    generator = torch.Generator().manual_seed(7)
    rebuilt = model_from_architecture(architecture, seed=7)
    state = rebuilt.state_dict()
    from ticketlab.ownership.align import unpack_sketch
    for entry in claim["sketch"]:
        if entry["side"] != "rows":
            continue
        signs = unpack_sketch(entry)
        weight = state[f"{entry['layer']}.weight"]
        guess = signs @ torch.randn(signs.shape[1], weight.shape[1] + 1, generator=generator, dtype=torch.float64)
        state[f"{entry['layer']}.weight"] = guess[:, :-1].to(weight.dtype).reshape(weight.shape)
    rebuilt.load_state_dict(state)
    random_ticket = model_from_architecture(architecture, seed=8)
    accuracy = evaluate(rebuilt, data.test_x, data.test_y)[1]
    baseline = evaluate(random_ticket, data.test_x, data.test_y)[1]
    assert accuracy <= max(baseline, 0.1) + 0.1 and accuracy < owner["test_accuracy"] - 0.3


# ---- disputes -------------------------------------------------------------------------------------------

def test_a_dispute_goes_to_the_owner_whose_signature_is_in_the_thiefs_copy(owner, tmp_path):
    """The thief re-signs the stolen ticket with their own key, retrains it and registers it later."""
    forged = jobs.attack_job(owner["ticket"], "forge", None, tmp_path / "thief.safetensors", overrides={"steps": "200it"})
    thief = {"model": forged["ticket"], "record": forged["forger_record"], "claim": forged["forger_claim"],
             "key": forged["forger_key"]}
    own = {"model": owner["ticket"], "record": owner["record"], "claim": owner["claim"], "key": owner["key_path"]}
    from ticketlab import ownership
    report = ownership.dispute(own, thief)
    assert report["a"]["valid"] and report["b"]["valid"], report
    assert report["a"]["signature_in_other_model"] and not report["b"]["signature_in_other_model"]
    assert report["owner"] == "a", report["reason"]
    assert ownership.dispute(thief, own)["owner"] == "b"
    # an unrelated model: no relation shown, whichever the order
    other = tmp_path / "other.safetensors"
    jobs.attack_job(owner["nulls"][0], "permute", 1.0, other)  # a ticket file of an independent model
    stranger = jobs.register_job  # the stranger cannot even register the owner's claim for their model
    with pytest.raises(TicketlabError, match="not the model"):
        stranger(other, owner["claim"], owner["key_path"], tmp_path / "stranger.record.json")


def test_register_accepts_the_signed_model_in_any_package_and_binds_it(owner, tmp_path):
    jobs.attack_job(owner["ticket"], "permute", 1.0, tmp_path / "released.onnx", output_format="onnx")
    result = jobs.register_job(tmp_path / "released.onnx", owner["claim"], owner["key_path"], tmp_path / "r.record.json",
                               anchor="rekor:1234", anchored_at="2026-02-01T00:00:00+00:00")
    record = read_record(result["record"])
    assert record["model"]["kind"] == "onnx" and record["anchor"] == "rekor:1234"
    assert jobs.verify_job(owner["ticket"], owner["key_path"], owner["claim"], record_path=result["record"],
                           registered=tmp_path / "released.onnx")["verified"]
    # the record names the file it registered: another file is refused as the registered model
    result = jobs.verify_job(owner["ticket"], owner["key_path"], owner["claim"], record_path=result["record"],
                             registered=owner["ticket"])
    assert not result["verified"] and "model_file" in result["failed_checks"]


# ---- bad input -------------------------------------------------------------------------------------------

def test_bad_inputs_get_one_line_and_leave_nothing(owner, tmp_path):
    signed, key, claim = owner["ticket"], owner["key_path"], owner["claim"]
    out = tmp_path / "out"
    cases = [
        lambda: jobs.sign_job(owner["unsigned"], tmp_path / "missing.key", out / "s.safetensors"),
        lambda: jobs.sign_job(owner["unsigned"], key, out / "s.safetensors", bits=100),
        lambda: jobs.sign_job(owner["unsigned"], key, out / "s.safetensors", carriers="hidden.0"),
        lambda: jobs.sign_job(owner["unsigned"], key, out / "s.safetensors", significance=0.01),
        lambda: jobs.sign_job(owner["unsigned"], key, out / "s.safetensors", triggers=10),
        lambda: jobs.sign_job(owner["unsigned"], key, out / "s.safetensors", anchored_at="yesterday"),
        lambda: jobs.attack_job(signed, "steal", None, out / "a.safetensors"),
        lambda: jobs.attack_job(signed, "rescale", 0.5, out / "a.safetensors"),
        lambda: jobs.verify_job(signed, key, tmp_path / "missing.claim.json"),
        lambda: jobs.verify_job(signed, key, signed),
        lambda: jobs.verify_job(tmp_path / "missing.safetensors", key, claim),
    ]
    for case in cases:
        with pytest.raises(TicketlabError) as error:
            case()
        assert "\n" not in str(error.value)
    assert not out.exists()


def test_models_without_alignable_hidden_units_are_refused_in_one_line():
    for name, shape, words in (("supernet", (3, 16, 16), "cat"), ("mlp_8", (20,), "too small")):
        structure = analyse(create_model(name, shape, 10, seed=0))
        with pytest.raises(TicketlabError, match=words) as error:
            require_carriers(structure, CURRENT.blocks_per_bit * CURRENT.bits, CURRENT.bits)
        assert "\n" not in str(error.value)


def test_no_ownership_call_shares_its_name_with_a_module():
    """Importing a submodule binds it on the package: ownership.verify must stay the function."""
    import pkgutil

    from ticketlab import ownership
    assert not {m.name for m in pkgutil.iter_modules(ownership.__path__)} & set(ownership.__all__)
    assert {"keygen", "sign", "register", "verify", "attack", "dispute"} <= set(ownership.__all__)
    assert all(callable(getattr(ownership, name)) and getattr(ownership, name).__doc__ for name in ownership.__all__)


def test_keygen_writes_a_private_key_and_never_overwrites(tmp_path):
    result = jobs.keygen_job(tmp_path / "k")
    assert result["key"] == str(tmp_path / "k") and len(read_key(tmp_path / "k")) == 32
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    before = (tmp_path / "k").read_bytes()
    with pytest.raises(TicketlabError, match="never overwritten"):
        jobs.keygen_job(tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == before


def test_blackbox_takes_any_labelling_callable_and_chance_is_one_over_the_classes(owner):
    record, key = owner["record_dict"], owner["key"]
    x, y = make_triggers(key, b"any context", CURRENT.triggers, (20,), 10)
    assert x.shape == (CURRENT.triggers, 20) and len(set(y.tolist())) == 10
    constant = blackbox(lambda batch: [3] * len(batch), record, None, key)
    assert not constant["verified"] and constant["chance"] == pytest.approx(0.1)


def test_the_batch_hook_keeps_training_exact_and_resumable(tmp_path, tiny_data, one_thread):
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=50, steps="30it", eval_every="30it")

    def trained(out, hook):
        model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=3)
        train(model, tiny_data, cfg, out_dir=out, data_seed=5, quiet=True, batch_hook=hook)
        return model.state_dict()

    plain = trained(tmp_path / "plain", None)
    same = trained(tmp_path / "identity", lambda i, x, y: (x, y))
    assert all(torch.equal(plain[k], same[k]) for k in plain)
    x, y = make_triggers(bytes(32), b"ctx", 10, tiny_data.input_shape, tiny_data.num_classes)
    mixer = TriggerMixer(x, y, 4)
    reference = trained(tmp_path / "ref", mixer)
    assert not torch.equal(reference["classifier.weight"], plain["classifier.weight"])
    calls = {"n": 0}

    def interrupting(i, bx, by):
        calls["n"] += 1
        if calls["n"] == 25:  # mid-run, after at least one end-of-epoch checkpoint
            raise KeyboardInterrupt
        return mixer(i, bx, by)
    with pytest.raises(KeyboardInterrupt):
        trained(tmp_path / "resumed", interrupting)
    assert (tmp_path / "resumed" / CHECKPOINT).exists()
    resumed = trained(tmp_path / "resumed", mixer)
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_the_command_line_signs_registers_verifies_and_settles_disputes_through_the_same_jobs(owner, tmp_path, cli):
    ticket, key, claim, record = owner["ticket"], owner["key_path"], owner["claim"], owner["record"]
    white = cli("verify", ticket, "--key", key, "--claim", claim, "--json")
    assert white.code == 0 and white.json()["verified"] and white.json()["mode"] == "white-box"
    black = cli("verify", ticket, "--key", key, "--record", record, "--blackbox")
    assert black.code == 0 and black.out.startswith("VERIFIED"), black.out + black.err
    assert cli("verify", owner["nulls"][0], "--key", key, "--claim", claim).code in (1, 2)
    released = tmp_path / "released.safetensors"
    assert cli("attack", ticket, "--kind", "rescale", "--format", "safetensors", "--out", released).code == 0
    registered = cli("register", released, "--claim", claim, "--key", key, "--anchor", "git:feed",
                     "--anchored-at", "2026-03-01T00:00:00+00:00", "--json")
    assert registered.code == 0, registered.err
    again = cli("verify", released, "--key", key, "--claim", claim, "--record", registered.json()["record"],
                "--registered", released)
    assert again.code == 0 and "VERIFIED" in again.out
    party = ["--{}-model", ticket, "--{}-record", record, "--{}-claim", claim, "--{}-key", key]
    both = [str(a).format(side) for side in "ab" for a in party]
    settled = cli("dispute", *both)  # the same registration twice: both signatures in both models, same time
    assert settled.code == 1 and settled.out.startswith("owner: none"), settled.out + settled.err


def test_binomial_tails_are_exact_far_below_floating_point_underflow():
    from fractions import Fraction
    from ticketlab.ownership.verification import binomial_p_value

    def exact_log10(k, n, p0):
        p = Fraction(p0)
        tail = sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1))
        return (math.log(tail.numerator) - math.log(tail.denominator)) / math.log(10)

    for k, n, p0 in ((0, 10, 0.5), (1, 1, 0.5), (652, 1024, 0.5), (1024, 1024, 0.5), (77, 256, 0.1), (256, 256, 0.1),
                     (30, 256, 0.1)):
        p, log10_p = binomial_p_value(k, n, p0)
        assert log10_p == pytest.approx(exact_log10(k, n, p0), rel=1e-10, abs=1e-12)
        assert p == pytest.approx(10 ** log10_p)
    assert binomial_p_value(1024, 1024, 0.5)[1] < -308  # below what a float p can hold
    assert binomial_p_value(5, 4, 0.5) == (0.0, -math.inf)
