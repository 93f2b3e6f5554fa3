"""The PaI commands end to end on tiny data: prune, train-ticket, pai sweeps and sanity checks."""

from pathlib import Path

import pytest

from ticketlab.pai import method_names
from ticketlab.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, VERDICTS, trained_threshold
from ticketlab.ticket import load_ticket

TINY = ["--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32_16", "--steps", "60it",
        "--batch-size", "32", "--eval-every", "20it", "--quiet"]


@pytest.mark.parametrize("method", method_names())
def test_prune_writes_a_ticket_with_the_exact_density(cli, tmp_path, method):
    res = cli("prune", *TINY, "--method", method, "--density", "0.05", "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    result = res.json()
    ticket = load_ticket(result["ticket"])
    assert ticket.mask.num_kept() == round(0.05 * ticket.mask.num_total())
    assert ticket.provenance.method == method and ticket.provenance.rewind_step == 0
    cost = result["search_cost"]
    assert cost["total_examples"] == cost["scoring_examples"] >= 0 and cost["total_wall_time_seconds"] > 0
    for name in ticket.mask.names():  # θ₀ with the mask applied
        assert (ticket.init_state[name][~ticket.mask[name]] == 0).all()


def examples_seen(start, stop, n=600, batch=32):
    """Training examples in iterations [start, stop) when the last batch of each epoch is partial."""
    per_epoch = -(-n // batch)
    return sum(min(batch, n - (i % per_epoch) * batch) for i in range(start, stop))


def test_prune_at_a_rewind_step_counts_the_dense_training(cli, tmp_path):
    result = cli("prune", *TINY, "--method", "snip", "--density", "0.2", "--rewind-step", "20it",
                 "--runs-dir", tmp_path, "--json").json()
    assert result["search_cost"]["dense_train_examples"] == examples_seen(0, 20) == 600 + 32
    assert result["search_cost"]["scoring_examples"] == 128
    ticket = load_ticket(result["ticket"])
    trained = cli("train-ticket", result["ticket"], "--runs-dir", tmp_path, "--json", "--quiet").json()
    assert trained["summary"]["start_iteration"] == 20 and trained["summary"]["iterations"] == 60
    assert trained["summary"]["train_examples"] == examples_seen(20, 60)
    # options given replace the ticket's recipe
    longer = cli("train-ticket", result["ticket"], "--steps", "80it", "--runs-dir", tmp_path, "--json", "--quiet").json()
    assert longer["summary"]["iterations"] == 80 and longer["run_dir"] != trained["run_dir"]
    assert load_ticket(longer["ticket"]).mask.equals(ticket.mask)


@pytest.mark.parametrize("args, words", [
    (["--density", "0"], ["--density", "(0, 1]"]),
    (["--density", "1.5"], ["--density"]),
    (["--method", "lottery"], ["lottery", "synflow"]),
    (["--at", "init", "--rewind-step", "10it"], ["conflict"]),
])
def test_prune_bad_input(cli, tmp_path, args, words):
    res = cli("prune", *TINY, *args, "--runs-dir", tmp_path / "runs")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    for word in words:
        assert word in res.err
    assert not (tmp_path / "runs").exists()


def test_pai_sweep_over_methods_densities_and_seeds(cli, tmp_path):
    res = cli("pai", *TINY, "--methods", "magnitude,synflow", "--densities", "0.3,0.05", "--seeds", "0,1",
              "--workers", "1", "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    rows = res.json()["results"]
    assert [(r["method"], r["density"]) for r in rows] == [("magnitude", 0.3), ("magnitude", 0.05),
                                                           ("synflow", 0.3), ("synflow", 0.05)]
    for row in rows:
        assert len(row["tickets"]) == 2 and 0 <= row["test_accuracy"] <= 1
        compute = row["compute"]  # finding plus training, averaged over seeds
        assert compute["total_examples"] == compute["search_examples"] + compute["train_examples"]
        assert compute["train_examples"] > 0 and compute["total_wall_time_seconds"] > compute["train_wall_time_seconds"] > 0
        for path in row["tickets"]:
            assert load_ticket(path).mask.num_kept() == round(row["density"] * load_ticket(path).mask.num_total())
    again = cli("pai", *TINY, "--methods", "magnitude", "--densities", "0.3", "--seeds", "0,1", "--workers", "1",
                "--runs-dir", tmp_path, "--json").json()["results"][0]
    assert again["test_accuracy"] == rows[0]["test_accuracy"]  # reused, not retrained


def test_sanity_table_for_a_pai_method(cli, tmp_path):
    res = cli("sanity", *TINY, "--method", "snip", "--density", "0.1", "--seeds", "0,1", "--workers", "1",
              "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    result = res.json()
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"ticket", "shuffle-layerwise", "reinit", "invert"}
    for name in ("shuffle-layerwise", "reinit", "invert"):
        row = rows[name]
        assert row["verdict"] in VERDICTS and row["reason"]
        assert row["delta"] == pytest.approx(row["test_accuracy"] - rows["ticket"]["test_accuracy"])
        paired = row["paired"]
        differences = [result["per_seed"][s]["ticket"] - result["per_seed"][s][name] for s in ("0", "1")]
        assert paired["n"] == 2 and list(paired["differences"].values()) == pytest.approx(differences)
        assert paired["mean_difference"] == pytest.approx(-row["delta"])
        assert paired["ci_low"] <= paired["mean_difference"] <= paired["ci_high"] and "p_value" in paired
        expected = (SUPPORTED if paired["ci_low"] > 0 else NOT_SUPPORTED if paired["ci_high"] < 0.01 else INCONCLUSIVE)
        if min(result["per_seed"][s]["ticket"] for s in ("0", "1")) > trained_threshold(result["chance"]):
            assert row["verdict"] == expected
    assert "paired t-test" in result["rule"] and "1 pp" in result["rule"]
    seed_dir = Path(result["run_dir"]) / "seed-0"
    shuffled = load_ticket(seed_dir / "ablation-shuffle-layerwise" / "ticket.safetensors").mask
    ticket = load_ticket(seed_dir / "ticket.safetensors").mask
    assert shuffled.layer_densities() == ticket.layer_densities() and not shuffled.equals(ticket)
    inverted = load_ticket(seed_dir / "ablation-invert" / "ticket.safetensors").mask
    assert inverted.num_kept() == ticket.num_kept() and not inverted.equals(ticket)
    text = cli("sanity", *TINY, "--method", "snip", "--density", "0.1", "--seeds", "0,1", "--workers", "1",
               "--runs-dir", tmp_path).out
    assert "shuffle-layerwise" in text and "rule: " in text and any(v in text for v in VERDICTS)


def test_sanity_of_random_has_no_inversion_and_one_seed_no_verdict(cli, tmp_path):
    result = cli("sanity", *TINY, "--method", "random", "--density", "0.2", "--seeds", "0",
                 "--runs-dir", tmp_path, "--json").json()
    rows = {r["variant"]: r for r in result["rows"]}
    assert rows["invert"]["test_accuracy"] is None and "not defined" in rows["invert"]["verdict"]
    assert rows["reinit"]["verdict"] == INCONCLUSIVE and "at least 2" in rows["reinit"]["reason"]


def test_sanity_of_imp_tickets(cli, tmp_path):
    res = cli("sanity", *TINY, "--method", "imp", "--density", "0.6", "--seeds", "0,1", "--workers", "1",
              "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    result = res.json()
    # 20% per level, the last level landing on the checked density exactly: 0.8, 0.64, 0.6.
    assert result["density"] == pytest.approx(0.6, abs=1e-3)
    rows = {r["variant"]: r for r in result["rows"]}
    assert all(rows[v]["verdict"] in VERDICTS for v in ("shuffle-layerwise", "reinit", "invert"))
    level_dir = Path(result["run_dir"]) / "seed-0" / "level-3"
    inverted = load_ticket(level_dir / "ablation-invert" / "ticket.safetensors").mask
    ticket = load_ticket(level_dir / "ticket.safetensors").mask
    previous = load_ticket(level_dir.parent / "level-2" / "ticket.safetensors").mask
    assert inverted.num_kept() == ticket.num_kept()
    for n in inverted.names():  # chosen among the weights alive before the last pruning step
        assert not (inverted[n] & ~previous[n]).any()
    bad = cli("sanity", *TINY, "--method", "ltr", "--density", "0.5", "--runs-dir", tmp_path)
    assert bad.code == 2 and "rewind step" in bad.err
    bad = cli("sanity", *TINY, "--method", "imp", "--density", "0.5", "--imp-schedule", "0.8,0.4", "--runs-dir", tmp_path)
    assert bad.code == 2 and "does not contain --density 0.5" in bad.err


def test_imp_sanity_reuses_a_scheduled_run_at_any_of_its_levels(cli, tmp_path):
    common = [*TINY, "--method", "imp", "--imp-schedule", "0.5,0.2", "--seeds", "0,1", "--workers", "1",
              "--runs-dir", tmp_path, "--json"]
    first = cli("sanity", *common, "--density", "0.5").json()
    second = cli("sanity", *common, "--density", "0.2").json()
    assert first["run_dir"] == second["run_dir"]
    assert first["density"] == pytest.approx(0.5, abs=1e-3) and second["density"] == pytest.approx(0.2, abs=1e-3)
    assert (Path(first["run_dir"]) / "seed-1" / "level-1" / "control-shuffle-layerwise").is_dir()


def test_cts_command_writes_an_exact_ticket_and_records_its_compute(cli, tmp_path):
    res = cli("cts", *TINY, "--density", "0.05", "--search-steps", "10it", "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    result = res.json()
    ticket = load_ticket(result["ticket"])
    assert result["method"] == "cts-kl" and ticket.provenance.method == "cts-kl"
    assert ticket.mask.num_kept() == round(0.05 * ticket.mask.num_total())
    pai = ticket.provenance.pai
    assert pai["masked_forward_examples"] == examples_seen(0, 10, batch=128) == pai["dense_forward_examples"]
    assert result["search_cost"]["scoring_examples"] == 2 * pai["masked_forward_examples"]
    assert len(pai["search_log"]) >= 1 and {"expected_density", "objective", "lambda"} <= set(pai["search_log"][-1])
    task = cli("cts", *TINY, "--density", "0.05", "--search-steps", "10%", "--objective", "task",
               "--runs-dir", tmp_path, "--json").json()
    assert task["method"] == "cts" and task["search_cost"]["scoring_examples"] == examples_seen(0, 6, batch=128)
    bad = cli("cts", *TINY, "--density", "0.05", "--objective", "mse", "--runs-dir", tmp_path / "x")
    assert bad.code == 2 and "kl" in bad.err and not (tmp_path / "x").exists()
    bad = cli("cts", *TINY, "--density", "0.05", "--search-steps", "lots", "--runs-dir", tmp_path / "y")
    assert bad.code == 2 and "search-steps" in bad.err


def test_sanity_of_cts_inverts_its_logits(cli, tmp_path):
    result = cli("sanity", *TINY, "--method", "cts", "--density", "0.1", "--search-steps", "10it", "--seeds", "0,1",
                 "--workers", "1", "--runs-dir", tmp_path, "--json").json()
    rows = {r["variant"]: r for r in result["rows"]}
    assert rows["invert"]["verdict"] in VERDICTS
    seed_dir = Path(result["run_dir"]) / "seed-0"
    ticket = load_ticket(seed_dir / "ticket.safetensors").mask
    inverted = load_ticket(seed_dir / "ablation-invert" / "ticket.safetensors")
    assert inverted.provenance.method == "cts-kl-inverted"
    assert inverted.mask.num_kept() == ticket.num_kept()
    overlap = sum(int((inverted.mask[n] & ticket[n]).sum()) for n in ticket.names())
    assert overlap == 0  # top and bottom 10% of the same logits cannot meet
