"""The main job end to end on a real Fashion-MNIST subset: levels, controls, table, report and plot."""

import json
from pathlib import Path

import pytest

from ticketlab import multitrain
from ticketlab.commands.lth import DEMO_DEFAULTS
from ticketlab.data import load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.recipes import preset


def fashion_mnist_available():
    try:
        load_dataset("fashion-mnist", train_subset=10)
        return True
    except TicketlabError:
        return False


pytestmark = pytest.mark.skipif(not fashion_mnist_available(),
                                reason="Fashion-MNIST not installed (make test installs it as root)")

SHORT = ["--train-subset", "3000", "--val-size", "1000", "--test-subset", "2000", "--steps", "300it",
         "--eval-every", "50it", "--levels", "2", "--quiet"]


def test_demo_writes_levels_controls_report_and_plot(cli, tmp_path):
    res = cli("demo", *SHORT, "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    result = json.loads(res.out)
    levels = result["levels"]
    assert [lv["level"] for lv in levels] == [0, 1, 2]
    assert levels[2]["density"] == pytest.approx(0.64, abs=1e-4)
    for lv in levels:
        assert 0.6 < lv["test_accuracy"] <= 1 and 0.6 < lv["reinit_test_accuracy"] <= 1  # both really learned
        assert 0 <= lv["early_stop_iteration"] <= 300 and lv["early_stop_iteration"] % 50 == 0
        assert Path(lv["ticket"]).exists()
    run_dir = Path(result["run_dir"])
    report = (run_dir / "report.md").read_text()
    assert report.count("\n| ") >= 1 + len(levels)  # header plus one row per level
    assert f"{100 * levels[1]['test_accuracy']:.2f}" in report and f"{100 * levels[1]['reinit_test_accuracy']:.2f}" in report
    png = (run_dir / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    table = cli("demo", *SHORT, "--runs-dir", tmp_path)  # finished: prints the stored table at once
    assert table.code == 0
    header = table.out.splitlines()[0]
    assert "% weights" in header and "reinit acc" in header and "early-stop it" in header
    assert "64.00" in table.out


def test_the_demo_recipe_reaches_3_6_percent_with_a_control_at_every_level():
    prune = DEMO_DEFAULTS["prune"]
    assert (1 - prune.prune_fraction) ** prune.levels <= 0.036
    assert DEMO_DEFAULTS["train"] == preset("demo")  # the preset of the same name is the demo's recipe


def test_the_demo_trains_each_control_together_with_its_ticket(cli, tmp_path, monkeypatch):
    groups = []
    original = multitrain._train_vectorized

    def spy(members, *args):
        groups.append([m.label for m in members])
        return original(members, *args)

    monkeypatch.setattr(multitrain, "_train_vectorized", spy)
    args = [*SHORT[:SHORT.index("--steps")], "--steps", "60it", "--eval-every", "30it", "--levels", "1", "--quiet"]
    res = cli("demo", *args, "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    assert groups == [["level 0", "level 0 random-reinit"], ["level 1", "level 1 random-reinit"]]
