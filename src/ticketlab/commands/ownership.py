"""The ownership commands: keygen, sign, verify, attack."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.commands.deploy import TORCHSCRIPT_HELP
from ticketlab.commands.spec import Command, Output, Seed, arg
from ticketlab.errors import TicketlabError
from ticketlab.ownership.attacks import DEFAULT_DENSIFY_SCALE, KINDS
from ticketlab.ownership.claim import DEFAULT_SIGNIFICANCE
from ticketlab.ownership.jobs import attack_job, keygen_job, sign_job, verify_job
from ticketlab.ownership.triggers import DEFAULT_TRIGGERS, PER_BATCH

DATA_ROOT_HELP = "folder holding datasets, if not where the ticket's run found them"


@dataclass(kw_only=True)
class KeygenOptions(Output):
    out: str = arg(help="key file to create", writes="file")


def keygen(configs: dict, options: KeygenOptions, log) -> dict:
    return keygen_job(options.out)


@dataclass(kw_only=True)
class SignOptions(Output):
    ticket: str = arg(help="ticket file to sign", positional=True)
    key: str = arg(help="the owner's key file (ticketlab keygen)")
    out: str = arg(help="signed ticket file to write", writes="file")
    claim: str | None = arg(None, "claim file to write (default: OUT with .claim.json)", writes="file")
    bits: int | None = arg(None, "signature bits n (default: 256, or the carriers' candidate units if fewer)")
    carriers: str | None = arg(None, "comma-separated carrier layers, e.g. hidden.0,hidden.1 (default: the largest "
                                     "hidden conv layers of a conv net, linear layers of an MLP; never the output layer)")
    triggers: int = arg(DEFAULT_TRIGGERS, "trigger inputs m (0 = white-box only)")
    triggers_per_batch: int = arg(PER_BATCH, "triggers mixed into each training batch")
    significance: float = arg(DEFAULT_SIGNIFICANCE, "decision level stored in the claim")
    data_root: str | None = arg(None, DATA_ROOT_HELP)


def sign(configs: dict, options: SignOptions, log) -> dict:
    return sign_job(options.ticket, options.key, options.out, options.claim, bits=options.bits,
                    carriers=options.carriers, triggers=options.triggers, per_batch=options.triggers_per_batch,
                    significance=options.significance, overrides=configs["train"], data_root=options.data_root,
                    quiet=options.silent)


def sign_text(result: dict, options) -> str:
    unsigned = result["unsigned_test_accuracy"]
    return (f"signed {result['bits']} bits into {', '.join(result['carriers'])} ({result['killed_units']} units killed, "
            f"as many weights switched on elsewhere) and {result['triggers']} triggers; test accuracy "
            f"{result['test_accuracy']:.4f}" + (f" (unsigned {unsigned:.4f})" if unsigned is not None else "")
            + f"\nsigned ticket: {result['ticket']}\nclaim: {result['claim']} (commitment {result['commitment']})")


@dataclass(kw_only=True)
class VerifyOptions(Output):
    suspect: str = arg(help="ticket file or safetensors state_dict (with --blackbox: also a compact, dense, "
                            "TorchScript or ONNX export)", positional=True)
    key: str = arg(help="the owner's key file")
    claim: str = arg(help="the claim file sign wrote")
    blackbox: bool = arg(False, "use only predicted labels on the trigger set", bare=True)
    torchscript: bool = arg(False, TORCHSCRIPT_HELP, bare=True)

    def check(self):
        if self.torchscript and not self.blackbox:
            raise TicketlabError("--torchscript goes with --blackbox (white-box verification reads weights from "
                                 "safetensors)")


def verify(configs: dict, options: VerifyOptions, log) -> dict:
    return verify_job(options.suspect, options.key, options.claim, options.blackbox, torchscript=options.torchscript)


def verify_text(result: dict, options) -> str:
    verdict = "VERIFIED" if result["verified"] else "NOT VERIFIED"
    if result["mode"] == "white-box":
        detail = f"{result['agreeing_bits']} of {result['bits']} signature bits agree"
    else:
        detail = f"trigger accuracy {result['trigger_accuracy']:.3f} (chance {result['chance']:.3f})"
    commitment = "" if result["commitment_ok"] else "; the key does not match the claim's commitment"
    return f"{verdict}: {detail}, p = {result['p_value']:.3g} (significance {result['significance']:g}){commitment}"


@dataclass(kw_only=True)
class AttackOptions(Seed, Output):
    signed: str = arg(help="signed ticket file", positional=True)
    kind: str = arg(help=", ".join(KINDS))
    strength: float | None = arg(None, "attack strength (see above; default per kind)")
    out: str = arg(help="attacked ticket file to write", writes="file")
    keep_mask: bool = arg(True, "finetune: keep the mask fixed (else every weight trains)")
    scale: float = arg(DEFAULT_DENSIFY_SCALE, "densify: value size relative to the layer's median alive |w|")
    seed: int = arg(0, "seed of the attack's random choices and data order", rank=1)
    data_root: str | None = arg(None, DATA_ROOT_HELP)


def attack(configs: dict, options: AttackOptions, log) -> dict:
    return attack_job(options.signed, options.kind, options.strength, options.out, seed=options.seed,
                      keep_mask=options.keep_mask, scale=options.scale, overrides=configs["train"],
                      data_root=options.data_root, quiet=options.silent)


def attack_text(result: dict, options) -> str:
    return (f"{result['kind']} at strength {result['strength']}: test accuracy {result['test_accuracy']:.4f}, "
            f"density {result['density']:.4f}; attacked model {result['ticket']}")


COMMANDS = (
    Command("keygen", "create an owner's secret key file (32 random bytes, mode 0600)",
            "Write a new secret key for signing tickets. Keep it private; a key file is never overwritten.",
            KeygenOptions, keygen,
            lambda result, options: f"wrote key {result['key']} (mode 0600, fingerprint {result['fingerprint']}); "
                                    "keep it secret"),
    Command("sign", "embed the owner's keyed signature and trigger set in a ticket, and retrain it",
            "White-box: n bits from HMAC-SHA256(key, ticket id) forced into units of the carrier layers (conv: "
            "kernels; linear: groups of 4 weights), every layer's density kept exactly. Black-box: m key-derived "
            "trigger inputs learned during the retraining from θ_k. Writes the signed ticket and a claim file (no "
            "key, no bits) holding a commitment to key, ticket and time.",
            SignOptions, sign, sign_text, sections=("train",), overrides=("train",)),
    Command("verify", "test whether a suspect model carries the owner's signature (exit 0 verified, 1 not)",
            "White-box: align the suspect's units to the claim, read liveness from weight magnitudes, count the "
            "signature bits that agree and report the one-sided binomial p-value (null agreement 1/2). --blackbox: "
            "only the suspect's predicted labels on the key's trigger set (null: the most common trigger label's "
            "frequency). Verified iff the key matches the claim and p <= its significance.",
            VerifyOptions, verify, verify_text, status=lambda result: 0 if result["verified"] else 1),
    Command("attack", "attack a signed ticket (fine-tune, prune, densify, permute, forge) and measure it",
            "Write the attacked model as a ticket file and report its test accuracy. --strength per kind:\n"
            "  finetune         epochs of further training (default 10) at --lr (default: the ticket's recipe);\n"
            "                   --keep-mask fixes the mask, --no-keep-mask trains every weight\n"
            "  prune-magnitude  fraction of each layer's remaining weights removed, smallest first (default 0.5)\n"
            "  prune-random     fraction of each layer's remaining weights removed at random (default 0.5)\n"
            "  densify          fraction of each layer's dead weights switched on with random signs at\n"
            "                   --scale x the layer's median alive |w| (default 1)\n"
            "  permute          fraction of each hidden layer's units shuffled, next layer's inputs to\n"
            "                   match: the same function (default 1)\n"
            "  forge            bits of the forger's own signature (default: as many as the carriers allow),\n"
            "                   embedded with a new key (OUT.forger.key, OUT.forger.claim.json) and retrained\n"
            "                   with the ticket's recipe (train options apply)",
            AttackOptions, attack, attack_text, sections=("train",), overrides=("train",)),
)
