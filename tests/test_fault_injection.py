"""Fault injection: commands SIGKILLed again and again at random moments (in start-up, in training, in scoring
or search, in a checkpoint, metrics or ticket write) finish, when run again, with exactly the results of a run
that was never interrupted, and leave no temporary file behind.

Covered: `imp` with controls, `train-ticket`, `prune` with rewinding (dense training to θ_k, then SNIP),
`cts` with rewinding (dense training to θ_k, then the search) and `sign` (retraining with triggers in a
hidden work folder, then the signed ticket, its private claim and its registration record). The commands run
as real subprocesses killed by a real SIGKILL; each is kept small (a small MLP, 64 training examples in
batches of 16, so a checkpoint every 4 iterations) so that the kills land everywhere. These tests are marked
`slow`: `pytest -m 'not slow'` skips them.
"""

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import REPO, TINY_IMP, run_subprocess
from ticketlab.cli import main
from ticketlab.ownership.claim import claim_commitment, read_claim, read_record
from ticketlab.ticket import load_ticket

ARGS = [*TINY_IMP, "--steps", "400it", "--eval-every", "25it", "--levels", "3", "--controls", "random-reinit", "--json"]
MAX_KILLS, TIME_LIMIT = 6, 240  # bounded: the loop stops after this many kills or this many seconds

# The other commands: at least KILLS kills must land (the process still running when killed) within
# KILL_TIME_CAP seconds, or CAP_RUNS uninterrupted run durations on a busy machine (about 15 are needed).
# Each kill comes after a delay drawn uniformly from MIN_DELAY to the duration of an uninterrupted run,
# so that kills hit start-up, the work and the writes alike.
KILLS, KILL_TIME_CAP, CAP_RUNS, MIN_DELAY = 20, 300, 40, 0.3
SMALL_DATA = ["--dataset", "synthetic", "--train-subset", "64", "--batch-size", "16"]
DATA = [*SMALL_DATA, "--model", "mlp_32_16"]
# `sign` needs a model whose carrier layers hold at least 4,096 connections (scheme 2 signs 1,024 bits):
# mlp_32_16 has 1,312 on the synthetic set, mlp_128_64 has 11,392.
SIGN_MODEL = "mlp_128_64"
# What legitimately differs between two signings of one ticket with one key: the record's anchored_at, the
# time of signing when no --anchored-at is given. The salt and nonce are derived from the key and the ticket,
# so the claim, both commitments and the signed ticket (byte for byte) are the same in every run.
SIGN_VARIES = ("anchored_at",)
# keys of timings, and of the machine's threads and load they ran with, which differ between identical runs
TIMING = ("seconds", "wall_time", "step_time", "speedup", "machine")
LOCK = ".lock"  # a run's lock file: it names the process holding the run, and must only be there


@pytest.fixture
def single_threaded(monkeypatch):
    """Subprocesses on one thread: gentle on a small machine, and every run (reference, killed, resumed)
    computes with the same threads."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


# ---- comparing results ---------------------------------------------------------------------------

def without_timings(value, ignore=()):
    """The JSON value with every key that holds a timing (or is in `ignore`) dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_timings(v, ignore) for k, v in value.items()
                if k not in ignore and not any(t in k for t in TIMING)}
    if isinstance(value, list):
        return [without_timings(v, ignore) for v in value]
    return value


def canonical(value, ignore=()) -> str:
    """Comparable text of a JSON value less its timings (text, so that NaN equals NaN)."""
    return json.dumps(without_timings(value, ignore), sort_keys=True)


def assert_same_tensors(a: dict, b: dict, what) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), f"{what}: {k}"


def assert_same_ticket(a: Path, b: Path) -> None:
    """The two ticket files are the same bytes (timings live beside tickets, and nothing in a ticket depends on
    the time, so identical runs write identical files; a signed ticket's record pins its bytes). When they
    differ, the message says which part does."""
    if a.read_bytes() == b.read_bytes():
        return
    ta, tb = load_ticket(a), load_ticket(b)
    assert ta.architecture == tb.architecture, b
    assert ta.mask.equals(tb.mask), f"{b}: masks differ"
    assert_same_tensors(ta.init_state, tb.init_state, f"{b}: initial weights")
    assert (ta.trained_state is None) == (tb.trained_state is None), b
    assert_same_tensors(ta.trained_state or {}, tb.trained_state or {}, f"{b}: trained weights")
    assert canonical(ta.provenance.to_metadata()) == canonical(tb.provenance.to_metadata()), f"{b}: metadata differs"
    raise AssertionError(f"{b} differs from {a} (same weights, mask and metadata, other bytes)")


def is_ticket(path: Path) -> bool:
    with safe_open(str(path), "pt") as f:
        return "ticketlab" in (f.metadata() or {})


def assert_same_file(a: Path, b: Path, root_a: Path, root_b: Path, ignore=()) -> None:
    """Byte for byte, except for recorded timings and `ignore`d keys in JSON (tickets always byte for byte);
    paths inside JSON are compared relative to the run's folder."""
    if a.name == LOCK:
        return
    if a.suffix == ".json":
        ja = json.loads(a.read_text().replace(str(root_a), "<root>"))
        jb = json.loads(b.read_text().replace(str(root_b), "<root>"))
        assert canonical(ja, ignore) == canonical(jb, ignore), f"{b} differs from {a}"
    elif a.suffix == ".safetensors" and is_ticket(a):
        assert_same_ticket(a, b)
    elif a.suffix == ".safetensors" and a.read_bytes() != b.read_bytes():  # a checkpoint: its metadata has timings
        assert_same_tensors(load_file(str(a)), load_file(str(b)), b)
        with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
            ma, mb = fa.metadata() or {}, fb.metadata() or {}
        assert ma.keys() == mb.keys(), b
        assert all(canonical(json.loads(ma[k])) == canonical(json.loads(mb[k])) for k in ma), f"{b}: metadata differs"
    else:
        assert a.read_bytes() == b.read_bytes(), f"{b} differs from {a}"


def files_under(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.tmp"))


def assert_same_results(reference: Path, root: Path, ignore=()) -> None:
    """Every file of the uninterrupted run is there with the same content, nothing else is (no temp files,
    no work folders), and no temp file is left behind."""
    assert not temporaries(root), f"temporary files left behind: {temporaries(root)}"
    ref_files, run_files = files_under(reference), files_under(root)
    assert set(run_files) == set(ref_files)
    for name, path in ref_files.items():
        assert_same_file(path, run_files[name], reference, root, ignore)


def assert_nothing_partial(root: Path) -> None:
    """After a kill, every file that looks finished is complete: tickets pass their checksum, other
    safetensors files load, JSON parses (temp files may be there: the kill may have hit a write)."""
    for path in files_under(root).values():
        if path.name.endswith(".tmp") or path.name == LOCK:
            continue
        if path.suffix == ".safetensors":
            load_ticket(path) if is_ticket(path) else load_file(str(path))
        elif path.name.endswith(".claim.json"):
            read_claim(path)
        elif path.name.endswith(".record.json"):
            read_record(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]


# ---- killing ---------------------------------------------------------------------------------------

def run_uninterrupted(args) -> float:
    """Run the command to the end in a subprocess; returns its duration in seconds."""
    started = time.monotonic()
    proc = run_subprocess(args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return time.monotonic() - started


def phase_of(root: Path, launched: float) -> str:
    """Where a kill landed, as far as the files tell: in a write (its temp file is still there), after the
    process had written something, or before it wrote anything (start-up, or scoring or search that
    writes nothing until it is done)."""
    if any(p.stat().st_mtime >= launched for p in temporaries(root)):
        return "in a write"
    if any(p.stat().st_mtime >= launched for p in files_under(root).values() if p.name != LOCK):
        return "after writing"
    return "before any write"


def kill_and_resume(tmp_path: Path, command, ignore=(), seed=0) -> Path:
    """`command(folder)` is the argument list of a command writing all its results into `folder`.

    An uninterrupted reference run gives the results and the duration D. Then the command is started
    again and again in another folder and SIGKILLed after a delay drawn uniformly from [MIN_DELAY, D];
    a run that finishes before its kill must give the reference results, and the next one starts over
    in a fresh folder. Once KILLS kills have landed, a final uninterrupted run must give the reference
    results. Returns the folder of that final run (and prints where the kills landed).

    D is the shortest duration seen of a whole uninterrupted run (the reference, or a run in a fresh
    folder that finished before its kill): on a machine shared with other work a single measurement can
    be far too long, and then most runs would finish before their kill."""
    reference = tmp_path / "reference"
    duration = run_uninterrupted(command(reference))
    rng, cap = random.Random(seed), max(KILL_TIME_CAP, CAP_RUNS * duration)
    stats, started, episode, fresh = Counter(), time.monotonic(), 0, True
    root = tmp_path / "killed-0"
    while stats["landed"] < KILLS:
        assert time.monotonic() - started < cap, f"only {stats['landed']} kills landed in {cap:.0f} s: {dict(stats)}"
        launched, launched_monotonic = time.time(), time.monotonic()
        proc = run_subprocess(command(root))
        try:
            proc.wait(timeout=rng.uniform(MIN_DELAY, duration))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        elapsed = time.monotonic() - launched_monotonic
        if proc.returncode == -signal.SIGKILL:
            fresh = False
            stats["landed"] += 1
            stats[phase_of(root, launched)] += 1
            assert_nothing_partial(root)
        else:  # it finished before the kill: an uninterrupted (resumed) run, which must give the reference
            assert proc.returncode == 0, err
            assert_same_results(reference, root, ignore)
            stats["finished"] += 1
            if fresh:
                duration = min(duration, elapsed)
            episode, fresh = episode + 1, True
            root = tmp_path / f"killed-{episode}"
    stats["kill seconds"] = round(time.monotonic() - started)
    stats["D seconds"] = round(duration, 1)
    run_uninterrupted(command(root))
    assert_same_results(reference, root, ignore)
    print(f"\n{tmp_path.name}: {dict(stats)}")
    # The delays reach past start-up: kills must also have landed in the work itself.
    assert stats["after writing"] + stats["in a write"] >= 1, dict(stats)
    return root


# Killing at chosen moments: the command runs with its atomic writes counted and SIGKILLs itself in its N-th
# write (the temp file written, the target not yet replaced: KILL_IN_WRITE=N) or right after it
# (KILL_AFTER_WRITE=N); at exit it reports how many writes it made. Random kills seldom land in the short gaps
# between a command's last writes, or inside one of them; this covers each.
KILLING_WRITES = """
import atexit, os, signal, sys
import ticketlab.files as files
inside, after, count = int(os.environ.get("KILL_IN_WRITE", 0)), int(os.environ.get("KILL_AFTER_WRITE", 0)), 0
write = files._write_atomically
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
def counted_write(*args, **kwargs):
    global count
    count += 1
    if count == inside:
        os.replace = die  # the writer moves its finished temp file over the target with os.replace
    write(*args, **kwargs)
    if count == after:
        die()
files._write_atomically = counted_write
atexit.register(lambda: print(f"ticketlab-writes: {count}", file=sys.stderr))
from ticketlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_killing_writes(args, **kill) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **{k.upper(): str(v) for k, v in kill.items()}}
    return subprocess.run([sys.executable, "-c", KILLING_WRITES, *map(str, args)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def kill_in_each_write(tmp_path: Path, command, ignore=(), last: int | None = None) -> int:
    """For every N (or only the `last` few), a fresh run of `command(folder)` killed inside its N-th write,
    and one killed after its last write, then run again to the end, give the results of an uninterrupted
    run. (Killed inside write N, the files are those of a kill after write N-1, plus a temp file.)
    Returns the number of writes."""
    import ticketlab.files
    assert hasattr(ticketlab.files, "_write_atomically"), "the writer this test counts was renamed"
    reference = tmp_path / "reference"
    done = run_killing_writes(command(reference))
    assert done.returncode == 0, done.stderr
    writes = int(re.search(r"ticketlab-writes: (\d+)", done.stderr).group(1))
    kills = [{"kill_in_write": n} for n in range(1 if last is None else max(1, writes - last + 1), writes + 1)]
    for kill in [*kills, {"kill_after_write": writes}]:
        root = tmp_path / "killed-{}-{}".format(*next(iter(kill.items())))
        killed = run_killing_writes(command(root), **kill)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert "kill_after_write" in kill or temporaries(root), f"{kill}: no temp file left by the killed write"
        assert_nothing_partial(root)
        run_uninterrupted(command(root))
        assert_same_results(reference, root, ignore)
    print(f"\n{tmp_path.name}: {writes} writes, killed in each of the last {len(kills)} and after the last")
    return writes


def make_source(runs: Path, model: str) -> dict[str, Path]:
    """A SNIP ticket of `model` rewound to θ_8 (synthetic data), and that ticket trained briefly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with redirect_stdout(StringIO()) as out:
            assert main(["prune", *SMALL_DATA, "--model", model, "--method", "snip", "--density", "0.2",
                         "--rewind-step", "8it", "--steps", "200it", "--eval-every", "20it", "--runs-dir", str(runs),
                         "--quiet", "--json"]) == 0
        ticket = Path(json.loads(out.getvalue())["ticket"])
        with redirect_stdout(StringIO()) as out:
            assert main(["train-ticket", str(ticket), "--runs-dir", str(runs), "--quiet", "--json"]) == 0
        trained = Path(json.loads(out.getvalue())["ticket"])
    finally:
        torch.set_num_threads(threads)
    return {"ticket": ticket, "trained": trained}


@pytest.fixture(scope="module")
def source_ticket(tmp_path_factory):
    """A SNIP ticket of the tiny MLP rewound to θ_8, and that ticket trained briefly."""
    return make_source(tmp_path_factory.mktemp("source"), "mlp_32_16")


@pytest.fixture(scope="module")
def signable_ticket(tmp_path_factory):
    """The same for a model large enough to carry a scheme 2 signature."""
    return make_source(tmp_path_factory.mktemp("signable"), SIGN_MODEL)


def assert_record_fits_signed_ticket(folder: Path) -> None:
    """The record of a finished signing is about the signed ticket as written: its file_sha256 is the SHA-256
    of the ticket file's bytes, and its claim commitment is that of the claim beside it."""
    record = read_record(folder / "signed.record.json")
    assert record["model"]["file_sha256"] == hashlib.sha256((folder / "signed.safetensors").read_bytes()).hexdigest()
    assert record["claim_commitment"] == claim_commitment(read_claim(folder / "signed.claim.json"))


# ---- the tests ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_random_sigkills_then_resume_give_the_uninterrupted_results(cli, tmp_path):
    reference = cli("imp", *ARGS, "--runs-dir", tmp_path / "ref").json()
    runs = tmp_path / "killed"
    rng = random.Random(1234)
    kills, started = 0, time.time()
    while kills < MAX_KILLS and time.time() - started < TIME_LIMIT:
        proc = run_subprocess(["imp", *ARGS, "--runs-dir", runs])
        time.sleep(rng.uniform(1.5, 5.0))  # past start-up (~1-2 s), anywhere in the run
        if proc.poll() is not None:  # it finished before the kill: the faults are over
            proc.communicate()
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        # Nothing that looks finished may be partial: every ticket file present must load.
        for ticket in runs.rglob("ticket.safetensors"):
            load_ticket(ticket)
    assert kills >= 1, "no kill landed; the run is too short for this test"
    resumed = cli("imp", *ARGS, "--runs-dir", runs).json()
    ref_dir, run_dir = Path(reference["run_dir"]), Path(resumed["run_dir"])
    assert ref_dir.name == run_dir.name
    keep = ("ticket.safetensors", "metrics.jsonl", "rewind.safetensors", "init.safetensors")
    ref_files = {k: p for k, p in files_under(ref_dir).items() if p.name in keep}
    run_files = {k: p for k, p in files_under(run_dir).items() if p.name in keep}
    assert set(ref_files) == set(run_files)
    for name, path in ref_files.items():
        assert_same_file(path, run_files[name], ref_dir, run_dir)
    assert not temporaries(runs), "a temporary file was left behind"


@pytest.mark.slow
def test_train_ticket_killed_at_random_resumes_to_the_uninterrupted_results(tmp_path, source_ticket, single_threaded):
    def command(folder):
        return ["train-ticket", source_ticket["ticket"], "--steps", "500it", "--eval-every", "20it",
                "--runs-dir", folder, "--quiet", "--json"]
    kill_and_resume(tmp_path, command, seed=1)


@pytest.mark.slow
def test_train_ticket_killed_in_each_of_its_writes_resumes_to_the_uninterrupted_results(
        tmp_path, source_ticket, single_threaded):
    def command(folder):  # from θ_8 to iteration 12, one epoch: metrics and checkpoint, summary, ticket, result
        return ["train-ticket", source_ticket["ticket"], "--steps", "12it", "--eval-every", "4it",
                "--runs-dir", folder, "--quiet", "--json"]
    assert kill_in_each_write(tmp_path, command) >= 6


@pytest.mark.slow
def test_prune_with_rewinding_killed_at_random_resumes_to_the_uninterrupted_results(tmp_path, single_threaded):
    def command(folder):  # 600 iterations of dense training to θ_k (a checkpoint every 4), then SNIP at θ_k
        return ["prune", *DATA, "--method", "snip", "--density", "0.2", "--rewind-step", "600it", "--steps", "1000it",
                "--runs-dir", folder, "--quiet", "--json"]
    kill_and_resume(tmp_path, command, seed=2)


@pytest.mark.slow
def test_cts_killed_at_random_resumes_to_the_uninterrupted_results(tmp_path, single_threaded):
    def command(folder):  # 100 iterations of dense training to θ_k, then a 600-step search (no checkpoints)
        return ["cts", *DATA, "--density", "0.2", "--rewind-step", "100it", "--steps", "1000it",
                "--search-steps", "600it", "--cts-batch-size", "16", "--runs-dir", folder, "--quiet", "--json"]
    kill_and_resume(tmp_path, command, seed=3)


@pytest.mark.slow
def test_sign_killed_at_random_resumes_to_the_uninterrupted_results(tmp_path, signable_ticket, single_threaded):
    key = tmp_path / "owner.key"
    assert run_uninterrupted(["keygen", "--out", key]) > 0

    def command(folder):  # retraining from θ_8 with triggers, checkpoints in .signed.safetensors.signing-<hash>/
        return ["sign", signable_ticket["trained"], "--key", key, "--out", folder / "signed.safetensors",
                "--steps", "600it", "--eval-every", "20it", "--triggers-per-batch", "4", "--quiet", "--json"]
    # Only the record's anchored_at (the time of signing) may differ between runs; the signed ticket's bytes,
    # the claim and the rest of the record (commitments, the ticket's hashes) must not.
    final = kill_and_resume(tmp_path, command, ignore=SIGN_VARIES, seed=4)
    # The signed ticket, the claim and the record of the final (resumed) run belong together.
    assert_record_fits_signed_ticket(final)


@pytest.mark.slow
def test_sign_killed_in_each_of_its_writes_resumes_to_the_uninterrupted_results(
        tmp_path, signable_ticket, single_threaded):
    key = tmp_path / "owner.key"
    assert run_uninterrupted(["keygen", "--out", key]) > 0

    def command(folder):  # a short retraining (its writes are the trainer's, covered above), then the outputs
        return ["sign", signable_ticket["trained"], "--key", key, "--out", folder / "signed.safetensors",
                "--steps", "12it", "--eval-every", "4it", "--triggers-per-batch", "4", "--quiet", "--json"]
    # Killed in each of its last writes (the training's summary, the signed ticket's timings, the signed
    # ticket, the claim, the record) and after the last.
    assert kill_in_each_write(tmp_path, command, ignore=SIGN_VARIES, last=5) >= 5
    for folder in [tmp_path / "reference", *sorted(tmp_path.glob("killed-*"))]:
        assert_record_fits_signed_ticket(folder)


def test_reopening_a_run_removes_only_the_temp_files_of_killed_writers(tmp_path):
    from ticketlab.config import ModelConfig
    from ticketlab.runs import open_run
    configs = {"model": ModelConfig(model="mlp_32_16")}
    run_dir = open_run(tmp_path, "train", configs)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = run_dir / "seed-0" / f".checkpoint.safetensors.{int(dead.stdout)}.abc123.tmp"
    live = run_dir / "seed-0" / f".metrics.jsonl.{os.getpid()}.def456.tmp"
    killed.parent.mkdir(parents=True)
    killed.write_bytes(b"partial")
    live.write_bytes(b"being written")
    assert open_run(tmp_path, "train", configs) == run_dir
    assert not killed.exists() and live.exists()


def test_outputs_beside_other_files_lose_only_their_own_temp_files_of_killed_writers(tmp_path):
    """`sign` writes beside the user's other files: only its outputs' leftovers go (the signed ticket, its
    timings, claim and record), only those of dead writers."""
    from ticketlab.files import remove_stale_temporaries
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    outputs = ["signed.safetensors", "signed.timings.json", "signed.claim.json", "signed.record.json"]
    killed = [tmp_path / f".{name}.{dead}.abc123.tmp" for name in outputs]
    other = tmp_path / f".notes.txt.{dead}.abc123.tmp"
    nested = tmp_path / "sub" / f".signed.record.json.{dead}.abc123.tmp"
    live = [tmp_path / f".{name}.{os.getpid()}.def456.tmp" for name in ("signed.claim.json", "signed.record.json")]
    nested.parent.mkdir()
    for path in (*killed, other, nested, *live):
        path.write_bytes(b"partial")
    remove_stale_temporaries(tmp_path, outputs)
    assert not any(path.exists() for path in killed)
    assert other.exists() and nested.exists() and all(path.exists() for path in live)
