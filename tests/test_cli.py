"""The command line: help with defaults, JSON output, and bad input as one clear line with exit code 2."""

import gzip
import json
import struct

import pytest

from conftest import TINY_IMP
from ticketlab.cli import build_parser


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
