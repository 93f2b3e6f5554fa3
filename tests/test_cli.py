"""The command line: help with defaults, JSON output, and bad input as one clear line with exit code 2."""

import ast
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_IMP
from ticketlab.cli import build_parser
from ticketlab.cli.parser import COMMANDS
from ticketlab.commands.build import build


def assert_clean_error(res, *words):
    assert res.code == 2, (res.code, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert "Traceback" not in res.err
    for word in words:
        assert word in lines[0], lines[0]


def test_every_command_and_option_has_help_with_default(cli):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"demo", "train", "imp", "show", "models", "datasets"} <= set(commands)
    for name, sub in commands.items():
        res = cli(name, "--help")
        assert res.code == 0
        for action in sub._actions:
            if action.option_strings and action.help not in (None, "==SUPPRESS==") and action.dest != "help":
                assert action.help, (name, action.dest)
        if name in ("imp", "demo"):
            assert "(default: 0.2)" in res.out and "--rewind-step" in res.out and "--output-prune-fraction" in res.out
    assert "(default: adam)" in cli("demo", "--help").out
    assert "(default: sgd)" in cli("imp", "--help").out


@pytest.mark.parametrize("args, words", [
    (["--model", "resnet7"], ["resnet7", "lenet_300_100"]),
    (["--dataset", "imagenet"], ["imagenet", "fashion-mnist"]),
    (["--prune-fraction", "1.5"], ["--prune-fraction", "between 0 and 1"]),
    (["--prune-fraction", "0"], ["--prune-fraction"]),
    (["--output-prune-fraction", "-0.1"], ["--output-prune-fraction"]),
    (["--steps", "ten"], ["steps", "ep"]),
    (["--optimizer", "lion"], ["lion"]),
])
def test_bad_options_fail_cleanly_and_write_nothing(cli, tmp_path, args, words):
    res = cli("imp", *TINY_IMP, "--runs-dir", tmp_path / "runs", *args)
    assert_clean_error(res, *words)
    assert not (tmp_path / "runs").exists()


def test_missing_dataset_says_how_to_get_it(cli, tmp_path):
    res = cli("imp", *TINY_IMP, "--dataset", "cifar10", "--data-root", tmp_path / "nothing", "--runs-dir", tmp_path / "runs")
    assert_clean_error(res, "cifar")
    assert not (tmp_path / "runs").exists()


def test_corrupt_data_file_is_named(cli, tmp_path):
    root = tmp_path / "data" / "mnist"
    root.mkdir(parents=True)
    for name, magic, dims in [("train-images-idx3-ubyte", 0x803, (60, 28, 28)), ("train-labels-idx1-ubyte", 0x801, (60,)),
                              ("t10k-images-idx3-ubyte", 0x803, (10, 28, 28)), ("t10k-labels-idx1-ubyte", 0x801, (10,))]:
        header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
        body = bytes(int(__import__("math").prod(dims)) - 5)  # truncated by 5 bytes
        (root / f"{name}.gz").write_bytes(gzip.compress(header + body))
    res = cli("train", "--dataset", "mnist", "--data-root", tmp_path / "data", "--runs-dir", tmp_path / "runs")
    assert_clean_error(res, "train-images-idx3-ubyte")
    assert not (tmp_path / "runs").exists()


def test_show_rejects_files_that_are_not_tickets(cli, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a ticket at all")
    assert_clean_error(cli("show", junk), "not a ticketlab ticket")
    assert_clean_error(cli("show", tmp_path / "absent.safetensors"), "does not exist")


def test_show_detects_a_damaged_ticket(cli, tmp_path):
    result = cli("imp", *TINY_IMP, "--levels", "1", "--runs-dir", tmp_path, "--json").json()
    path = result["levels"][1]["ticket"]
    shown = cli("show", path, "--json")
    assert shown.code == 0
    meta = shown.json()
    assert meta["density"] == pytest.approx(result["levels"][1]["density"])
    assert set(meta["layers"]) == {"hidden.0.weight", "hidden.1.weight", "classifier.weight"}
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0xFF  # flip bits in the last stored tensor
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    assert_clean_error(cli("show", damaged), "damaged")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bytes(data[:-100]))
    assert_clean_error(cli("show", truncated), "damaged")


def test_json_output_is_exactly_one_object(cli, tmp_path):
    res = cli("train", "--dataset", "synthetic", "--train-subset", "300", "--model", "mlp_16", "--steps", "20it",
              "--eval-every", "10it", "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    obj = json.loads(res.out)
    assert {"run_dir", "ticket", "summary"} <= set(obj)
    assert cli("show", obj["ticket"], "--json").json()["density"] == 1.0
    for command in ("models", "datasets"):
        listing = cli(command, "--json").json()
        assert len(listing[command]) >= 5


def test_shell_completion_scripts_know_every_command(cli):
    res = cli("completion", "bash")
    assert res.code == 0
    commands = build_parser()._subparsers._group_actions[0].choices
    assert all(name in res.out for name in commands)
    assert "--rewind-step" in res.out


def test_a_bare_ticketlab_lists_the_commands_and_exits_0(cli):
    res = cli()
    assert res.code == 0 and "imp" in res.out and "train-ticket" in res.out


def test_errors_name_the_command_once(cli):
    res = cli("train", "--optimizer", "rmsprop")
    assert res.code == 2 and res.err.startswith("ticketlab train: error:") and "ticketlab ticketlab" not in res.err
    assert cli("bogus").err.startswith("ticketlab: error:")


def test_help_shows_each_default_once_and_none_for_unset_options(cli):
    from ticketlab.cli import HelpFormatter
    for name, sub in build_parser()._subparsers._group_actions[0].choices.items():
        text = cli(name, "--help").out
        assert "(default: None)" not in text and "(default: )" not in text, name
        formatter = HelpFormatter(name)
        for action in sub._actions:
            text = formatter._get_help_string(action)
            assert text.count("(default:") <= 1, (name, action.dest, text)


def test_a_preset_gives_the_recipe_the_options_given_replace_and_the_recipe_is_announced(cli, tmp_path):
    res = cli("train", "--preset", "lth-lenet", "--dataset", "synthetic", "--train-subset", "600", "--model",
              "mlp_32_16", "--steps", "20it", "--eval-every", "10it", "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    recipe = [line for line in res.err.splitlines() if line.startswith("recipe: ")]
    assert len(recipe) == 1 and "optimizer adam" in recipe[0] and "lr 0.0012" in recipe[0]
    assert "batch_size 60" in recipe[0] and "steps 20it" in recipe[0]
    config = json.loads(next(tmp_path.glob("train-*/config.json")).read_text())["config"]["train"]
    assert (config["optimizer"], config["lr"], config["batch_size"], config["steps"]) == ("adam", 1.2e-3, 60, "20it")


def test_a_field_a_section_shares_with_an_earlier_one_takes_its_prefix_and_the_old_spelling_still_works(cli):
    text = cli("cts", "--help").out
    assert "--cts-lr" in text and "--cts-batch-size" in text and "--search-lr" not in text
    parser = build_parser()
    for spelling in ("--cts-lr", "--search-lr"):
        given = vars(parser.parse_args(["cts", spelling, "0.5", "--lr", "0.05", "--search-batch-size", "16"]))
        configs, _ = build(COMMANDS[given.pop("command")], given)
        assert (configs["cts"].lr, configs["train"].lr, configs["cts"].batch_size) == (0.5, 0.05, 16)


# ---- the module graph: the command line is a client of the command registry -----------------------

SRC = Path(__file__).resolve().parents[1] / "src"
# Imports of ticketlab modules inside functions that defer a heavy dependency, as (module, imported
# module). Any other function-local import hides a dependency: write it at the top.
DEFERRED_IMPORTS = {("ticketlab.ownership", "ticketlab.ownership.jobs"),  # its Python API loads scipy on first use
                    ("ticketlab.ownership", "ticketlab.ownership.verify"),
                    ("ticketlab.cli", "ticketlab.cli.app")}  # `ticketlab --version` answers without torch


def ticketlab_imports() -> list[tuple[str, str, bool]]:
    """(importing module, imported module, inside a function) for every import of a ticketlab module."""
    files = {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (SRC / "ticketlab").rglob("*.py")}
    found = []
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        local = {id(node) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for node in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [node.module or ""]) \
                    .strip(".") if node.level else node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            found += [(module, target, id(node) in local) for target in targets if target in files]
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports from a module back to itself, or None."""
    done, path = set(), []

    def visit(module):
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if found := visit(imported):
                return found
        path.pop()
        done.add(module)
        return None
    return next((cycle for module in sorted(graph) if (cycle := visit(module))), None)


def test_no_import_cycle_and_no_imports_hidden_in_functions():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    imports = ticketlab_imports()
    graph: dict[str, set[str]] = {}
    for module, imported, _ in imports:
        graph.setdefault(module, set()).add(imported)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    hidden = sorted({(module, imported) for module, imported, local in imports if local} - DEFERRED_IMPORTS)
    assert not hidden, f"imports inside functions (write them at the top of the module): {hidden}"
    # The command line is a client: nothing but its entry point imports it (sweeps use the registry).
    clients = {m for m, imported, _ in imports if imported.startswith("ticketlab.cli")}
    assert {m for m in clients if not m.startswith("ticketlab.cli")} == {"ticketlab.__main__"}


def test_version_answers_without_importing_torch():
    code = ("import sys; from ticketlab.cli import main; status = main(['--version']); "
            "print('torch' in sys.modules); raise SystemExit(status)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    version, torch_loaded = done.stdout.split("\n")[:2]
    assert version.startswith("ticketlab ") and torch_loaded == "False"


@pytest.mark.slow
def test_the_top_level_help_is_kept_and_then_printed_without_importing_torch(tmp_path):
    code = ("import sys; from ticketlab.cli import main; status = main(sys.argv[1:]); "
            "print('torch' in sys.modules, file=sys.stderr); raise SystemExit(status)")

    def run(cache, *args):
        env = {**os.environ, "TICKETLAB_CACHE_DIR": str(cache), "COLUMNS": "100"}
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr.strip() == "True"

    for attempt in range(3):  # a source file edited between two runs (another key) is the only reason to try again
        cache = tmp_path / str(attempt)
        (first, imported_first), (second, imported_second), (bare, imported_bare) = (
            run(cache, "--help"), run(cache, "-h"), run(cache))
        if len(list((cache / "cli").glob("help-*.txt"))) == 1:
            break
    assert imported_first and not imported_second and not imported_bare
    assert first == second == bare and "usage: ticketlab" in first and "imp" in first