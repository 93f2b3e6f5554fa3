"""The ownership commands: keygen, sign, register, verify, dispute, attack (docs/ownership.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.commands.deploy import TORCHSCRIPT_HELP
from ticketlab.commands.spec import Command, Output, Seed, arg
from ticketlab.errors import TicketlabError
from ticketlab.ownership.attacks import DEFAULT_DENSIFY_SCALE, KINDS
from ticketlab.ownership.jobs import attack_job, dispute_job, keygen_job, register_job, sign_job, verify_job
from ticketlab.ownership.triggers import PER_BATCH

DATA_ROOT_HELP = "folder holding datasets, if not where the ticket's run found them"


@dataclass(kw_only=True)
class KeygenOptions(Output):
    out: str = arg(help="key file to create", writes="file")


def keygen(configs: dict, options: KeygenOptions, log) -> dict:
    return keygen_job(options.out)


ANCHOR_HELP = ("time anchor of the release, e.g. a git commit or a transparency-log entry that attests the "
               "record's digest")
ANCHORED_AT_HELP = "the time the anchor attests, ISO 8601 with a zone (default: now)"


@dataclass(kw_only=True)
class SignOptions(Output):
    ticket: str = arg(help="ticket file to sign", positional=True)
    key: str = arg(help="the owner's key file (ticketlab keygen)")
    out: str = arg(help="signed ticket file to write", writes="file")
    claim: str | None = arg(None, "private claim to write; keep it with the key (default: OUT with .claim.json)",
                            writes="file")
    record: str | None = arg(None, "registration record to write; publish it (default: OUT with .record.json)",
                             writes="file")
    anchor: str = arg("", ANCHOR_HELP)
    anchored_at: str | None = arg(None, ANCHORED_AT_HELP)
    triggers_per_batch: int = arg(PER_BATCH, "triggers mixed into each training batch")
    data_root: str | None = arg(None, DATA_ROOT_HELP)


def sign(configs: dict, options: SignOptions, log) -> dict:
    return sign_job(options.ticket, options.key, options.out, options.claim, per_batch=options.triggers_per_batch,
                    overrides=configs["train"], data_root=options.data_root, quiet=options.silent,
                    record_path=options.record, anchor=options.anchor, anchored_at=options.anchored_at)


def sign_text(result: dict, options) -> str:
    unsigned = result["unsigned_test_accuracy"]
    return (f"signed {result['bits']} bits into {', '.join(result['carriers'])} ({result['killed_blocks']} blocks "
            f"switched off, {result['revived_blocks']} on) and {result['triggers']} triggers (scheme "
            f"{result['scheme']}); test accuracy {result['test_accuracy']:.4f}"
            + (f" (unsigned {unsigned:.4f})" if unsigned is not None else "")
            + f"\nsigned ticket: {result['ticket']}\nprivate claim: {result['claim']} (keep it with the key)"
            + f"\nregistration record: {result['record']} (publish it)")


@dataclass(kw_only=True)
class RegisterOptions(Output):
    model: str = arg(help="released file of the signed model: ticket, safetensors or .pt state_dict, or ONNX",
                     positional=True)
    claim: str = arg(help="the private claim sign wrote")
    key: str = arg(help="the owner's key file")
    out: str | None = arg(None, "registration record to write (default: MODEL with .record.json)", writes="file")
    anchor: str = arg("", ANCHOR_HELP)
    anchored_at: str | None = arg(None, ANCHORED_AT_HELP)


def register(configs: dict, options: RegisterOptions, log) -> dict:
    return register_job(options.model, options.claim, options.key, options.out, anchor=options.anchor,
                        anchored_at=options.anchored_at)


@dataclass(kw_only=True)
class VerifyOptions(Output):
    suspect: str = arg(help="ticket, export, safetensors or .pt state_dict, or ONNX (rescaled, permuted, densified "
                            "or shrunk alike); with --blackbox also TorchScript", positional=True)
    key: str = arg(help="the owner's key file")
    claim: str | None = arg(None, "the private claim (needed for white-box, not for --blackbox)")
    record: str | None = arg(None, "the registration record (default: beside the claim)")
    registered: str | None = arg(None, "the owner's registered model file: adds the checks that the record names it "
                                       "and that the claim is what the scheme computes from it")
    blackbox: bool = arg(False, "use only predicted labels on the trigger set", bare=True)
    torchscript: bool = arg(False, TORCHSCRIPT_HELP, bare=True)

    def check(self):
        if self.torchscript and not self.blackbox:
            raise TicketlabError("--torchscript goes with --blackbox (white-box verification reads weights, never "
                                 "runs code)")
        if self.claim is None and not self.blackbox:
            raise TicketlabError("white-box verification needs the private claim (--claim); --blackbox needs only "
                                 "the record (--record)")
        if self.claim is None and self.record is None:
            raise TicketlabError("give the registration record (--record)")


def verify(configs: dict, options: VerifyOptions, log) -> dict:
    return verify_job(options.suspect, options.key, options.claim, options.blackbox, torchscript=options.torchscript,
                      record_path=options.record, registered=options.registered)


def verify_text(result: dict, options) -> str:
    verdict = "VERIFIED" if result["verified"] else "NOT VERIFIED"
    if result["mode"] == "white-box":
        detail = f"{result['agreeing_bits']} of {result['bits']} signature bits agree"
    else:
        detail = f"trigger accuracy {result['trigger_accuracy']:.3f} (chance {result['chance']:.3f})"
    failed = result.get("failed_checks") or []
    problems = f"; failed checks: {', '.join(failed)}" if failed else ""
    return f"{verdict}: {detail}, p = {result['p_value']:.3g} (alpha {result['alpha']:.3g}){problems}"


@dataclass(kw_only=True)
class DisputeOptions(Output):
    a_model: str = arg(help="party a's registered model file")
    a_record: str = arg(help="party a's registration record")
    a_claim: str = arg(help="party a's private claim")
    a_key: str = arg(help="party a's key file")
    b_model: str = arg(help="party b's registered model file")
    b_record: str = arg(help="party b's registration record")
    b_claim: str = arg(help="party b's private claim")
    b_key: str = arg(help="party b's key file")


def dispute(configs: dict, options: DisputeOptions, log) -> dict:
    return dispute_job(options.a_model, options.a_record, options.a_claim, options.a_key,
                       options.b_model, options.b_record, options.b_claim, options.b_key)


def dispute_text(result: dict, options) -> str:
    lines = [f"owner: {result['owner'] or 'none'} ({result['reason']})"]
    for name in ("a", "b"):
        party = result[name]
        failed = [k for k, v in party.get("checks", {}).items() if not v]
        lines.append(f"{name}: registration {'holds' if party['valid'] else 'fails (' + ', '.join(failed) + ')'}; "
                     f"signature in the other's model: {'yes' if party['signature_in_other_model'] else 'no'}")
    return "\n".join(lines)


@dataclass(kw_only=True)
class AttackOptions(Seed, Output):
    signed: str = arg(help="signed ticket file", positional=True)
    kind: str = arg(help=", ".join(KINDS))
    strength: float | None = arg(None, "attack strength (see above; default per kind)")
    out: str = arg(help="attacked model file to write", writes="file")
    format: str = arg("ticket", "how the attacked model is published: a ticket, a plain safetensors state_dict, or ONNX",
                      choices=("ticket", "safetensors", "onnx"))
    keep_mask: bool = arg(True, "finetune: keep the mask fixed (else every weight trains)")
    scale: float = arg(DEFAULT_DENSIFY_SCALE, "densify: value size relative to the layer's median alive |w|")
    seed: int = arg(0, "seed of the attack's random choices and data order", rank=1)
    data_root: str | None = arg(None, DATA_ROOT_HELP)


def attack(configs: dict, options: AttackOptions, log) -> dict:
    return attack_job(options.signed, options.kind, options.strength, options.out, seed=options.seed,
                      keep_mask=options.keep_mask, scale=options.scale, overrides=configs["train"],
                      data_root=options.data_root, quiet=options.silent, output_format=options.format)


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
            "Scheme 2 (docs/ownership.md): the carrier layers, positions and bits of the white-box signature and the "
            "black-box trigger set are derived from the key and a salt by a fixed procedure; the number of bits, "
            "of triggers and the level alpha are the scheme's. Every layer's density is kept exactly. Writes the "
            "signed ticket, a private claim (keep it with the key; it holds keyed sketches, no weights or masks) and "
            "a registration record to publish at release, with a time anchor of your choice.",
            SignOptions, sign, sign_text, sections=("train",), overrides=("train",)),
    Command("register", "write the registration record of a signed model as released (any format)",
            "For a signed model released in another form (safetensors or .pt state_dict, ONNX): checks that the file "
            "carries the claim's signature and writes its registration record, to publish with the release.",
            RegisterOptions, register,
            lambda result, options: f"registration record {result['record']} for {result['model']} "
                                    f"(sha256 {result['file_sha256'][:16]}...); publish it"),
    Command("verify", "test whether a suspect model carries the owner's signature (exit 0 verified, 1 not)",
            "Checks the key and the claim against the registration record, then reads the suspect in a canonical "
            "form that rescaling, permutation, densification and shrinking do not change, and counts the signature "
            "bits that agree (one-sided binomial test, null agreement 1/2). --blackbox: only the suspect's predicted "
            "labels on the key's trigger set. Verified iff every check holds and p <= the scheme's alpha, a level "
            "no search over 2^40 keys, ids or records reaches with probability above 1e-6.",
            VerifyOptions, verify, verify_text, status=lambda result: 0 if result["verified"] else 1),
    Command("dispute", "decide between two parties who both claim a model (exit 0 an owner named, 1 none)",
            "Each party gives its registered model, record, claim and key. Each registration is checked against its "
            "own model, then each signature is tested in the other's model: the owner is the party whose signature "
            "is in the other's model while the other's is not in theirs; where both are in both, the earlier record.",
            DisputeOptions, dispute, dispute_text, status=lambda result: 0 if result["owner"] else 1),
    Command("attack", "attack a signed ticket as a thief would and measure it",
            "Write the attacked model (--format: ticket, safetensors state_dict or ONNX) and report its test "
            "accuracy. --strength per kind:\n"
            "  finetune         epochs of further training (default 10) at --lr (default: the ticket's recipe);\n"
            "                   --keep-mask fixes the mask, --no-keep-mask trains every weight\n"
            "  prune-magnitude  fraction of each layer's remaining weights removed, smallest first (default 0.5)\n"
            "  prune-random     fraction of each layer's remaining weights removed at random (default 0.5)\n"
            "  densify          fraction of each layer's dead weights switched on with random signs at\n"
            "                   --scale x the layer's median alive |w| (default 1)\n"
            "  permute          fraction of each hidden layer's units shuffled, next layer's inputs to\n"
            "                   match: the same function (default 1)\n"
            "  rescale          largest factor c_max: each hidden unit's incoming weights times c, outgoing\n"
            "                   times 1/c, c log-uniform in [1/c_max, c_max]: the same function (default 1e4)\n"
            "  disguise         rescale, permute and densify together (strength: c_max, default 1e4)\n"
            "  shrink           dead units removed physically (no strength)\n"
            "  reprune          epochs of dense fine-tuning, then a SNIP re-prune to the ticket's density (default 1)\n"
            "  distill          epochs of distillation into the thief's own SNIP ticket (default 10)\n"
            "  forge            a new key signs the stolen ticket, retrained with its recipe (train options\n"
            "                   apply); also writes OUT.forger.key, .forger.claim.json and .forger.record.json",
            AttackOptions, attack, attack_text, sections=("train",), overrides=("train",)),
)
