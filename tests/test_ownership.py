"""Ownership on tiny models: keys and bits, signing keeps densities, sound verification, attacks, errors."""

import contextlib
import io
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from ticketlab.cli import main
from ticketlab.config import TrainConfig
from ticketlab.deploy.export import ticket_model
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.ownership import blackbox, signature_bits
from ticketlab.ownership.claim import read_claim, unpack_reference
from ticketlab.ownership.keys import read_key
from ticketlab.ownership.signature import unit_entries
from ticketlab.ownership.triggers import TriggerMixer, make_triggers
from ticketlab.ownership.verify import binomial_p_value
from ticketlab.ticket import Ticket, load_ticket
from ticketlab.trainer import CHECKPOINT, train

TINY = ["--train-subset", "600", "--steps", "60it", "--batch-size", "32", "--eval-every", "60it", "--quiet"]
MLP = ["--dataset", "synthetic", "--model", "mlp_64_32", *TINY]
CONV = ["--dataset", "synthetic-images", "--model", "conv2", *TINY]
SIGN = ["--bits", "128", "--triggers", "24", "--triggers-per-batch", "12", "--steps", "150it", "--quiet"]


def run(*args):
    """The CLI in this process: (exit code, parsed JSON or stdout text)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    text = out.getvalue()
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


def make_ticket(root, model_args, seed, trained):
    code, pruned = run("prune", *model_args, "--method", "magnitude", "--density", "0.3", "--seed", seed,
                       "--runs-dir", root / "runs", "--json")
    assert code == 0, pruned
    if not trained:
        return pruned["ticket"]
    code, result = run("train-ticket", pruned["ticket"], "--runs-dir", root / "runs", "--json")
    assert code == 0, result
    return result["ticket"]


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """A signed mlp_64_32 ticket with its claim and key, and an independently found ticket."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("owner")
    ticket = make_ticket(root, MLP, 0, trained=True)
    other = make_ticket(root, MLP, 1, trained=True)
    assert run("keygen", "--out", root / "owner.key", "--json")[0] == 0
    code, signed = run("sign", ticket, "--key", root / "owner.key", "--out", root / "signed.safetensors", *SIGN, "--json")
    assert code == 0, signed
    yield {**signed, "root": root, "ticket": ticket, "other": other, "key": root / "owner.key"}
    torch.set_num_threads(threads)


def verify(suspect, key, claim, *extra):
    return run("verify", suspect, "--key", key, "--claim", claim, "--json", *extra)


def test_hmac_bits_are_deterministic_per_key_and_differ_across_keys():
    tid = "ab" * 32
    a, b = bytes(range(32)), bytes(range(1, 33))
    assert (signature_bits(a, tid, 300) == signature_bits(a, tid, 300)).all()
    assert (signature_bits(a, tid, 100) == signature_bits(a, tid, 300)[:100]).all()  # one stream
    assert 100 < (signature_bits(a, tid, 300) != signature_bits(b, tid, 300)).sum() < 200
    assert (signature_bits(a, tid, 300) != signature_bits(a, "cd" * 32, 300)).any()  # bound to the ticket
    assert 100 < signature_bits(a, tid, 300).sum() < 200


def test_keygen_writes_a_private_key_and_never_overwrites(tmp_path):
    code, result = run("keygen", "--out", tmp_path / "k", "--json")
    assert code == 0 and result["key"] == str(tmp_path / "k")
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600 and len(read_key(tmp_path / "k")) == 32
    before = (tmp_path / "k").read_bytes()
    assert run("keygen", "--out", tmp_path / "k")[0] == 2 and (tmp_path / "k").read_bytes() == before
    assert run("keygen", "--out", tmp_path / "k2")[0] == 0 and (tmp_path / "k2").read_bytes() != before


def test_binomial_p_values_are_exact():
    assert binomial_p_value(10, 10, 0.5)[0] == pytest.approx(2 ** -10)
    assert binomial_p_value(0, 10, 0.5)[0] == 1.0
    p, log10 = binomial_p_value(256, 256, 0.5)
    assert log10 == pytest.approx(-256 * 0.30103, rel=1e-4) and p > 0


def test_signing_keeps_every_layer_density_and_verifies(owner):
    before, after = load_ticket(owner["ticket"]), load_ticket(owner["root"] / "signed.safetensors")
    assert before.mask.names() == after.mask.names()
    for name in before.mask.names():
        assert int(after.mask[name].sum()) == int(before.mask[name].sum()), name
    assert not before.mask.equals(after.mask) and owner["killed_units"] > 0
    code, result = verify(owner["root"] / "signed.safetensors", owner["key"], owner["claim"])
    assert code == 0 and result["verified"] is True
    assert result["bits"] == 128 and result["agreeing_bits"] >= 120 and result["p_value"] < 1e-10
    code, text = run("verify", owner["root"] / "signed.safetensors", "--key", owner["key"], "--claim", owner["claim"])
    assert code == 0 and text.startswith("VERIFIED")


def test_the_claim_holds_neither_the_key_nor_the_bits(owner):
    text = Path(owner["claim"]).read_text()
    key = read_key(owner["key"])
    assert key.hex() not in text and "key" not in json.loads(text)
    claim = read_claim(owner["claim"])
    assert claim["bits"] == 128 and isinstance(claim["bits"], int)
    reference = unpack_reference(claim)
    for carrier in claim["carriers"]:  # signature units are blank in the reference: 0s and 1s look alike
        weight = reference[carrier["layer"]]
        units = unit_entries(tuple(weight.shape), carrier["kind"], torch.tensor(carrier["positions"]))
        assert (weight[units] == 0).all()


def test_a_permuted_copy_computes_the_same_function_and_verifies(owner, tmp_path):
    signed = owner["root"] / "signed.safetensors"
    code, attacked = run("attack", signed, "--kind", "permute", "--out", tmp_path / "p.safetensors", "--json")
    assert code == 0, attacked
    a, b = load_ticket(signed), load_ticket(tmp_path / "p.safetensors")
    assert not torch.equal(a.trained_state["hidden.0.weight"], b.trained_state["hidden.0.weight"])
    x = torch.randn(50, 20)
    assert torch.allclose(ticket_model(a)(x), ticket_model(b)(x), atol=1e-5)
    assert attacked["test_accuracy"] == pytest.approx(a.info["metrics"]["test_accuracy"])
    code, result = verify(tmp_path / "p.safetensors", owner["key"], owner["claim"])
    assert code == 0 and result["agreeing_bits"] >= 120


def test_a_densified_copy_verifies(owner, tmp_path):
    code, attacked = run("attack", owner["root"] / "signed.safetensors", "--kind", "densify", "--strength", "1",
                         "--out", tmp_path / "d.safetensors", "--json")
    assert code == 0 and attacked["density"] == 1.0
    code, result = verify(tmp_path / "d.safetensors", owner["key"], owner["claim"])
    assert code == 0 and result["p_value"] < 1e-10


def test_half_pruned_and_finetuned_copies_verify(owner, tmp_path):
    signed = owner["root"] / "signed.safetensors"
    for kind, extra in (("prune-magnitude", ["--strength", "0.5"]), ("finetune", ["--strength", "2", "--no-keep-mask"])):
        code, attacked = run("attack", signed, "--kind", kind, *extra, "--out", tmp_path / f"{kind}.safetensors", "--json")
        assert code == 0, attacked
        code, result = verify(tmp_path / f"{kind}.safetensors", owner["key"], owner["claim"])
        assert code == 0 and result["p_value"] < 1e-10, (kind, result)
    assert not list(tmp_path.glob(".*"))  # the fine-tuning's work folder is gone


def test_an_independent_ticket_and_a_forgers_key_do_not_verify(owner, tmp_path):
    code, result = verify(owner["other"], owner["key"], owner["claim"])
    assert code == 1 and result["verified"] is False and result["p_value"] > 1e-6
    assert 0.3 < result["agreement"] < 0.7
    assert run("keygen", "--out", tmp_path / "forger.key")[0] == 0
    code, result = verify(owner["root"] / "signed.safetensors", tmp_path / "forger.key", owner["claim"])
    assert code == 1 and result["commitment_ok"] is False and result["p_value"] > 1e-6
    # the unsigned parent does not carry the signature either: its positions are all alive
    code, result = verify(owner["ticket"], owner["key"], owner["claim"])
    assert code == 1


def test_a_forger_signs_with_their_own_key_but_not_the_owners(owner, tmp_path):
    code, forged = run("attack", owner["root"] / "signed.safetensors", "--kind", "forge", "--strength", "64",
                       "--out", tmp_path / "f.safetensors", "--json")
    assert code == 0, forged
    assert stat.S_IMODE(os.stat(forged["forger_key"]).st_mode) == 0o600
    code, own = verify(tmp_path / "f.safetensors", forged["forger_key"], forged["forger_claim"])
    assert code == 0 and own["bits"] == 64
    assert verify(owner["root"] / "signed.safetensors", forged["forger_key"], owner["claim"])[0] == 1
    # the forged claim does not fit the owner's ticket either
    assert verify(owner["root"] / "signed.safetensors", forged["forger_key"], forged["forger_claim"])[0] == 1


def test_blackbox_verification_takes_any_labelling_callable(owner):
    claim, key = read_claim(owner["claim"]), read_key(owner["key"])
    model = ticket_model(load_ticket(owner["root"] / "signed.safetensors"))
    result = blackbox(lambda x: model(x).argmax(1), claim, key)
    assert result["verified"] and result["trigger_accuracy"] > 2 * result["chance"] and result["p_value"] < 1e-6
    _, y = make_triggers(key, claim["ticket_id"], claim["triggers"], (20,), 10)
    assert result["chance"] == pytest.approx(torch.bincount(y).max().item() / len(y))
    common = int(torch.bincount(y).argmax())
    constant = blackbox(lambda x: [common] * len(x), claim, key)
    assert not constant["verified"] and constant["trigger_accuracy"] == pytest.approx(constant["chance"])
    code, result = verify(owner["root"] / "signed.safetensors", owner["key"], owner["claim"], "--blackbox")
    assert code == 0 and set(result) >= {"verified", "p_value", "trigger_accuracy", "chance"}
    code, result = verify(owner["other"], owner["key"], owner["claim"], "--blackbox")
    assert code == 1


def test_a_plain_state_dict_can_be_verified(owner, tmp_path):
    from safetensors.torch import save_file
    model = ticket_model(load_ticket(owner["root"] / "signed.safetensors"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    code, result = verify(tmp_path / "plain.safetensors", owner["key"], owner["claim"])
    assert code == 0 and result["p_value"] < 1e-10


def test_bad_inputs_exit_2_and_leave_nothing_behind(owner, tmp_path):
    signed = owner["root"] / "signed.safetensors"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "not-a-claim.json").write_text(json.dumps({"hello": 1}))
    resnet = create_model("resnet20", (3, 8, 8), 10, seed=0)  # not supported: a clear error
    Ticket(resnet.architecture, Mask.ones(resnet), resnet.state_dict(), None,
           dict(load_ticket(owner["ticket"]).info, dataset="synthetic-images")).save(inputs / "resnet.safetensors")
    given = sorted(p.name for p in inputs.iterdir())
    out = tmp_path / "out"
    cases = [
        ("sign", owner["ticket"], "--key", tmp_path / "missing.key", "--out", out / "s.safetensors"),
        ("sign", owner["ticket"], "--key", owner["key"], "--out", out / "s.safetensors", "--bits", "100000"),
        ("sign", owner["ticket"], "--key", owner["key"], "--out", out / "s.safetensors", "--carriers", "hidden.7"),
        ("attack", signed, "--kind", "steal", "--out", out / "a.safetensors"),
        ("attack", signed, "--kind", "prune-random", "--strength", "1.5", "--out", out / "a.safetensors"),
        ("verify", signed, "--key", tmp_path / "missing.key", "--claim", owner["claim"]),
        ("verify", signed, "--key", owner["key"], "--claim", tmp_path / "missing.claim.json"),
        ("verify", signed, "--key", owner["key"], "--claim", inputs / "not-a-claim.json"),
        ("verify", signed, "--key", owner["key"], "--claim", signed),
        ("sign", inputs / "resnet.safetensors", "--key", owner["key"], "--out", out / "s.safetensors"),
    ]
    for args in cases:
        assert run(*args)[0] == 2, args
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]
    assert sorted(p.name for p in inputs.iterdir()) == given


def test_conv2_kernel_signature_keeps_densities_and_survives_permutation(tmp_path, one_thread):
    ticket = make_ticket(tmp_path, CONV, 0, trained=False)
    assert run("keygen", "--out", tmp_path / "k")[0] == 0
    code, signed = run("sign", ticket, "--key", tmp_path / "k", "--out", tmp_path / "s.safetensors", *SIGN, "--json")
    assert code == 0, signed
    assert signed["carriers"] == ["features.2.weight"]
    before, after = load_ticket(ticket), load_ticket(signed["ticket"])
    assert all(int(after.mask[n].sum()) == int(before.mask[n].sum()) for n in before.mask.names())
    assert run("attack", signed["ticket"], "--kind", "permute", "--out", tmp_path / "p.safetensors")[0] == 0
    x = torch.randn(8, 3, 8, 8)
    a, b = ticket_model(after), ticket_model(load_ticket(tmp_path / "p.safetensors"))
    assert torch.allclose(a(x), b(x), atol=1e-4)
    for suspect in (signed["ticket"], tmp_path / "p.safetensors"):
        code, result = verify(suspect, tmp_path / "k", signed["claim"])
        assert code == 0 and result["p_value"] < 1e-10, result
    # a claim for another architecture is a user error, not a verdict
    code, _ = run("verify", signed["ticket"], "--key", tmp_path / "k", "--claim", owner_claim_for_mlp(tmp_path))
    assert code == 2


def owner_claim_for_mlp(tmp_path):
    """A claim whose architecture is not the suspect's."""
    claim = read_claim(next(tmp_path.glob("s.claim.json")))
    claim["architecture"] = {"name": "mlp_64_32", "input_shape": [20], "num_classes": 10}
    path = tmp_path / "mlp.claim.json"
    path.write_text(json.dumps(claim))
    return path


def test_the_batch_hook_keeps_training_exact_and_resumable(tmp_path, tiny_data, one_thread, monkeypatch):
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=50, steps="30it", eval_every="30it")

    def trained(out, hook, interrupt_at=None):
        model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=3)
        train(model, tiny_data, cfg, out_dir=out, data_seed=5, quiet=True, batch_hook=hook)
        return model.state_dict()

    plain = trained(tmp_path / "plain", None)
    same = trained(tmp_path / "identity", lambda i, x, y: (x, y))
    assert all(torch.equal(plain[k], same[k]) for k in plain)
    x, y = make_triggers(bytes(32), "00" * 32, 10, tiny_data.input_shape, tiny_data.num_classes)
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
