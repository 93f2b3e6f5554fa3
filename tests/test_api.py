"""The Python API: docs/api.md's examples run as written, and the API and the CLI compute the same runs."""

import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ticketlab as tl
from conftest import REPO

EXAMPLES = REPO / "docs" / "api.md"


def test_the_api_pages_examples_run_in_order(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLES.read_text(), re.S)
    assert len(blocks) >= 8
    script = tmp_path / "examples.py"
    script.write_text("\n".join(blocks))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: " in done.stdout and "keeps" in done.stdout.split("refused: ")[1]
    assert (tmp_path / "lenet.onnx").stat().st_size > 0 and (tmp_path / "report" / "report.md").exists()
    assert list((tmp_path / "runs").glob("imp-*/seed-0/level-2/ticket.safetensors"))


def test_the_api_and_the_cli_compute_the_same_imp_run(cli, tmp_path):
    data = tl.load_dataset("synthetic", train_subset=600)
    model = tl.create_model("mlp_32_16", data, seed=0)
    recipe = tl.preset("openlth-lenet", steps="60it", batch_size=32, eval_every="20it")
    run = tl.imp(model, data, recipe, levels=2, seeds=[0], runs_dir=tmp_path / "api")
    res = cli("imp", "--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32_16", "--steps", "60it",
              "--batch-size", "32", "--eval-every", "20it", "--levels", "2", "--runs-dir", tmp_path / "cli", "--json",
              "--quiet")
    assert res.code == 0, res.err
    assert run.run_dir.name == Path(res.json()["run_dir"]).name  # the same config, the same identity
    for level in (0, 1, 2):
        a = run.levels[level].ticket_paths[0]
        b = Path(res.json()["levels"][level]["tickets"][0])
        assert Path(a).read_bytes() == b.read_bytes()
    assert [level.density for level in run.levels] == pytest.approx([1.0, 0.8, 0.64], abs=1e-3)
    # θ₀ of tl.create_model(seed=0) is the θ₀ every run of seed 0 starts from
    theta0 = tl.load_ticket(run.levels[0].ticket_paths[0]).init_state
    assert all(torch.equal(theta0[k], v) for k, v in model.state_dict().items())


def test_a_mistake_raises_one_line_before_anything_is_written(tmp_path):
    data = tl.load_dataset("synthetic", train_subset=600)
    with pytest.raises(tl.TicketlabError, match="batch"):
        tl.imp("mlp_32_16", data, tl.TrainConfig(batch_size=5000, steps="10it"), runs_dir=tmp_path)
    with pytest.raises(tl.TicketlabError, match="lr"):
        tl.preset("lth-lenet", lr=float("nan"))
    with pytest.raises(tl.TicketlabError, match="cannot be rebuilt"):
        tl.imp(torch.nn.Linear(20, 10), data, runs_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_model_of_ones_own_goes_through_the_cli_by_factory_name(cli, tmp_path):
    package = tmp_path / "pkg" / "usernets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def mlp(input_shape, num_classes, hidden=16):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_classes))\n\n"
        "def data():\n"
        "    g = torch.Generator().manual_seed(1)\n"
        "    x = torch.randn(300, 12, generator=g)\n"
        "    y = (x[:, 0] > 0).long()\n"
        "    return torch.utils.data.TensorDataset(x[:250], y[:250]), torch.utils.data.TensorDataset(x[250:], y[250:])\n")
    sys.path.insert(0, str(tmp_path / "pkg"))
    try:
        args = ["--model", "usernets:mlp", "--kwargs", '{"hidden": 8}', "--dataset", "usernets:data", "--steps", "30it",
                "--batch-size", "25", "--eval-every", "10it", "--runs-dir", tmp_path / "runs", "--quiet", "--json"]
        imp = cli("imp", *args, "--levels", "1")
        assert imp.code == 0, imp.err
        ticket = Path(imp.json()["levels"][1]["tickets"][0])
        assert tl.load_ticket(ticket).architecture["kwargs"] == {"hidden": 8}
        pruned = cli("prune", *args, "--method", "synflow", "--density", "0.25")
        assert pruned.code == 0, pruned.err
        shown = cli("show", ticket, "--json")
        assert shown.code == 0 and shown.json()["architecture"]["name"] == "usernets:mlp"
        exported = cli("export", ticket, "--format", "onnx", "--out", tmp_path / "m.onnx")
        assert exported.code == 0, exported.err
    finally:
        sys.path.remove(str(tmp_path / "pkg"))
        sys.modules.pop("usernets", None)
    gone = cli("show", ticket)
    assert gone.code == 2 and "usernets" in gone.err and "PYTHONPATH" in gone.err


class Noisy(torch.utils.data.Dataset):
    """A dataset with a random transform: the same index gives different inputs."""

    def __len__(self):
        return 50

    def __getitem__(self, index):
        return torch.randn(4), index % 3


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter((torch.zeros(4), 0) for _ in range(10))


def test_torch_data_is_held_in_memory_with_the_usual_split_and_refused_where_it_would_break_determinism(monkeypatch):
    x, y = torch.arange(400.0).reshape(100, 4), torch.arange(100) % 5
    pair = torch.utils.data.TensorDataset(x[:80], y[:80]), torch.utils.data.TensorDataset(x[80:], y[80:])
    loader = torch.utils.data.DataLoader(pair[0], batch_size=7, shuffle=True)  # its shuffling plays no part
    a = tl.Dataset.from_torch(loader, pair[1], val_size=10, seed=3)
    b = tl.Dataset.from_tensors(x[:80], y[:80], x[80:], y[80:], val_size=10, seed=3)
    assert a.num_classes == 5 and len(a.train_y) == 70 and len(a.val_y) == 10 and len(a.test_y) == 20
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    with pytest.raises(tl.TicketlabError, match="random transforms"):
        tl.Dataset.from_torch(Noisy(), pair[1])
    with pytest.raises(tl.TicketlabError, match="IterableDataset"):
        tl.Dataset.from_torch(torch.utils.data.DataLoader(Stream()), pair[1])
    picky = [torch.utils.data.DataLoader(pair[0], sampler=torch.utils.data.SubsetRandomSampler(range(10))),
             torch.utils.data.DataLoader(pair[0], sampler=torch.utils.data.RandomSampler(pair[0], replacement=True)),
             torch.utils.data.DataLoader(pair[0], batch_sampler=[[0, 1], [2, 3]])]
    for loader in picky:  # a loader whose sampler defines other data is refused, never silently ignored
        with pytest.raises(tl.TicketlabError, match="DataLoader"):
            tl.Dataset.from_torch(loader, pair[1])
    from ticketlab.data import external
    monkeypatch.setattr(external, "MAX_BYTES", 1000)
    with pytest.raises(tl.TicketlabError, match="GiB"):
        tl.Dataset.from_torch(*pair)


def test_data_held_in_memory_trains_and_resumes_like_registry_data(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 10, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    data = tl.Dataset.from_tensors(x[:250], y[:250], x[250:], y[250:], val_size=50)
    recipe = tl.TrainConfig(steps="40it", batch_size=25, eval_every="20it")
    model = tl.create_model("mlp_16", data, seed=0)
    first = tl.prune(model, data, method="snip", density=0.5, recipe=recipe, runs_dir=tmp_path)
    again = tl.prune(model, data, method="snip", density=0.5, recipe=recipe, runs_dir=tmp_path)
    assert first.path == again.path and first.mask.equals(again.mask)
    result = tl.train(first, data, recipe, runs_dir=tmp_path)
    assert result.test_accuracy > 0.6
    assert tl.train(first, data, recipe, runs_dir=tmp_path).summary == result.summary  # stored, not retrained
    other = tl.Dataset.from_tensors(x[:250], 1 - y[:250], x[250:], 1 - y[250:], val_size=50)
    assert tl.prune(model, other, method="snip", density=0.5, recipe=recipe, runs_dir=tmp_path).path != first.path


SYNTHETIC = ["--dataset", "synthetic", "--train-subset", "600", "--model", "mlp_32_16", "--optimizer", "adam",
             "--lr", "1.2e-3", "--steps", "40it", "--batch-size", "32", "--eval-every", "20it"]
IMAGES = ["--dataset", "synthetic-images", "--train-subset", "300", "--steps", "10it", "--batch-size", "32",
          "--eval-every", "10it"]


def test_every_call_names_and_stores_the_run_its_command_does(cli, tmp_path, one_thread):
    """Each call's run is the one its command finds finished in the same runs folder: the same identity."""
    runs = tmp_path / "runs"
    data = tl.load_dataset("synthetic", train_subset=600)
    recipe = tl.preset("lth-lenet", steps="40it", batch_size=32, eval_every="20it")

    def same(args, api_result):
        res = cli(*args, "--runs-dir", runs, "--json", "--quiet")
        assert res.code == 0, res.err
        return res.json()

    run = tl.imp("mlp_32_16", data, recipe, levels=1, prune_fraction=0.5, runs_dir=runs)
    stable = tl.stability(run.levels[1].ticket, rewind_step="20it", points=3, runs_dir=runs)
    assert same(["stability", run.levels[1].ticket_paths[0], "--rewind-step", "20it", "--points", "3"],
                stable)["run_dir"] == str(stable.run_dir) and stable.barrier == stable.result["barrier"]
    control = tl.controls(run.run_dir, "shuffle-layerwise", levels=[1])
    assert control.rows[0]["level"] == 1 and Path(control.rows[0]["ticket"]).exists()
    again = cli("control", run.run_dir, "--kind", "shuffle-layerwise", "--levels", "1", "--json", "--quiet").json()
    assert again["controls"] == control.rows  # found trained, not trained again

    checked = tl.sanity("mlp_32_16", data, "synflow", 0.3, recipe, seeds=[0], runs_dir=runs)
    cli_checked = same(["sanity", *SYNTHETIC, "--method", "synflow", "--density", "0.3", "--seeds", "0"], checked)
    assert cli_checked["run_dir"] == str(checked.run_dir) and cli_checked["rows"] == checked.rows
    assert set(checked.verdicts) == {"shuffle-layerwise", "reinit", "invert"}
    cells = tl.pai_sweep("mlp_32_16", data, ["random", "synflow"], 0.3, recipe, runs_dir=runs)
    assert cells.row("synflow", 0.3)["run_dir"] == str(checked.run_dir)  # the sanity check's ticket, reused
    cli_cells = same(["pai", *SYNTHETIC, "--methods", "random,synflow", "--densities", "0.3"], cells)
    assert [r["tickets"] for r in cli_cells["results"]] == [r["tickets"] for r in cells.rows]

    images = tl.load_dataset("synthetic-images", train_subset=300)
    short = tl.TrainConfig(steps="10it", batch_size=32, eval_every="10it")
    layers = tl.layer_tickets("resnet14_w4", images, short, remove=1, min_per_stage=1, runs_dir=runs)
    assert same(["layers", *IMAGES, "--model", "resnet14_w4", "--remove", "1", "--min-per-stage", "1"],
                layers)["tickets"] == layers.tickets
    filters = tl.filter_tickets(layers.tickets[0], runs_dir=runs)
    assert same(["filters", "--match-ticket", layers.tickets[0]], filters)["tickets"] == filters.tickets
    # Matched by FLOPs (the default) to the same seed's layer ticket: never the more expensive network.
    assert filters.result["match"] == "flops"
    assert filters.result["ticket_flops"] <= layers.result["ticket_flops"] == filters.result["per_seed"]["0"]["match_target"]
    robust = tl.robustness([layers.ticket, filters.ticket])
    assert cli("robustness", layers.tickets[0], filters.tickets[0], "--json").json()["rows"] == robust.rows

    recipe_args = ["--steps", "2ep", "--batch-size", "50", "--eval-every", "1ep"]
    super_recipe = tl.preset("supertickets", steps="2ep", batch_size=50, eval_every="1ep")
    found = tl.find_supertickets("supernet_w4_c1_e1", images, super_recipe, density=0.3, prune_interval="1ep",
                            runs_dir=runs)
    assert same(["supertickets", *IMAGES[:4], "--model", "supernet_w4_c1_e1", *recipe_args, "--density", "0.3",
                 "--prune-interval", "1ep"], found)["tickets"] == found.tickets
    digits = tl.load_dataset("synthetic-images", train_subset=200, test_subset=100)
    moved = tl.transfer(found.ticket, digits, super_recipe, runs_dir=runs)
    assert same(["transfer", found.tickets[0], "--dataset", "synthetic-images", "--train-subset", "200",
                 "--test-subset", "100", *recipe_args], moved)["tickets"] == moved.tickets

    scored = tl.infer(run.levels[1].ticket, path="dense")
    assert cli("infer", run.levels[1].ticket_paths[0], "--path", "dense", "--json").json()["test_accuracy"] == \
        scored.test_accuracy == tl.infer(run.levels[1].ticket, data, path="csr").test_accuracy
    cost = tl.profile(run.levels[1].ticket, batch_sizes=[2], repeats=1)
    assert cost.counts["masked"]["nonzero_parameters"] < cost.counts["dense"]["nonzero_parameters"]
    assert "b=2 ms" in cost.table()


def test_a_sweep_given_as_a_dict_is_the_sweep_of_its_grid_file(cli, tmp_path, one_thread):
    grid = {"command": "train", "fixed": {"dataset": "synthetic", "train_subset": 600, "model": "mlp_32_16",
                                          "steps": "20it", "batch_size": 32, "eval_every": "20it"},
            "grid": {"seed": [0, 1]}}
    swept = tl.sweep(grid, workers=1, runs_dir=tmp_path)
    assert swept.done == 2 and swept.failed == 0 and swept.report.exists()
    toml = tmp_path / "grid.toml"
    toml.write_text('command = "train"\n[fixed]\ndataset = "synthetic"\ntrain_subset = 600\nmodel = "mlp_32_16"\n'
                    'steps = "20it"\nbatch_size = 32\neval_every = "20it"\n[grid]\nseed = [0, 1]\n')
    res = cli("sweep", toml, "--workers", "1", "--runs-dir", tmp_path, "--json")
    assert res.code == 0 and res.json()["sweep_dir"] == str(swept.sweep_dir)
    assert callable(tl.sweep) and callable(tl.find_supertickets)
    # importing a submodule binds it on the package, so no API name may be a submodule's
    submodules = {m.name for m in pkgutil.iter_modules(tl.__path__)}
    assert not submodules & set(tl.__all__)
    with pytest.raises(tl.TicketlabError, match="grid.seed must be a non-empty list"):
        tl.sweep({"command": "train", "grid": {"seed": []}}, runs_dir=tmp_path)


def test_the_new_calls_refuse_mistakes_with_one_line_before_anything_is_written(tmp_path):
    data = tl.load_dataset("synthetic", train_subset=600)
    images = tl.load_dataset("synthetic-images", train_subset=300)
    recipe = tl.TrainConfig(steps="20it", batch_size=32, eval_every="20it")
    out = tmp_path / "runs"
    refused = [
        (lambda: tl.sanity("mlp_32_16", data, "snipp", 0.1, recipe, runs_dir=out), "unknown pruning method"),
        (lambda: tl.sanity("mlp_32_16", data, "snip", 0.1, recipe, imp_schedule="0.5,0.1", runs_dir=out),
         "imp-schedule applies"),
        (lambda: tl.sanity("mlp_32_16", data, "imp", 0.1, recipe, imp_schedule="0.5,0.2", runs_dir=out),
         "does not contain"),
        (lambda: tl.sanity("mlp_32_16", data, "snip", 0.1, recipe, seeds=[0, 0], runs_dir=out), "distinct"),
        (lambda: tl.pai_sweep("mlp_32_16", data, ["snip"], [0.1, 0.1], recipe, runs_dir=out), "twice"),
        (lambda: tl.pai_sweep("mlp_32_16", data, ["snip"], [1.5], recipe, runs_dir=out), "densities"),
        (lambda: tl.pai_sweep("mlp_32_16", data, [], [0.1], recipe, runs_dir=out), "at least one method"),
        (lambda: tl.prune("mlp_32_16", data, density=0.1, recipe=recipe, score_batchez=2, runs_dir=out),
         "unknown option"),
        (lambda: tl.layer_tickets("mlp_32_16", data, recipe, runs_dir=out), "ResNet"),
        (lambda: tl.layer_tickets("resnet14_w4", images, recipe, remove=9, runs_dir=out), "impossible"),
        (lambda: tl.layer_tickets("resnet14_w4", images, recipe, power_watts=0, runs_dir=out), "power_watts"),
        (lambda: tl.find_supertickets("mlp_32_16", data, recipe, runs_dir=out), "no searchable blocks"),
        (lambda: tl.find_supertickets("supernet_w4_c1_e1", images, recipe, density=2, runs_dir=out), "density"),
        (lambda: tl.transfer(tmp_path / "none.safetensors", images, recipe, runs_dir=out), "does not exist"),
        (lambda: tl.stability(tmp_path / "none.safetensors", points=2, runs_dir=out), "points"),
        (lambda: tl.controls(tmp_path, "reinit"), "unknown control kind"),
        (lambda: tl.controls(tmp_path, "random-reinit"), "not a ticketlab run"),
        (lambda: tl.profile(tmp_path / "none.safetensors", batch_sizes=[0]), "batch sizes"),
        (lambda: tl.profile(tmp_path / "none.safetensors", repeats=0), "repeats"),
        (lambda: tl.infer(tmp_path / "none.safetensors", path="fast"), "path"),
        (lambda: tl.robustness([]), "at least one ticket"),
        (lambda: tl.sweep({"command": "train", "fixed": {"seed": 0}, "grid": {"seed": [1]}}, runs_dir=out), "both"),
        (lambda: tl.sanity("mlp_32_16", data, "snip", 0.1, tl.TrainConfig(device="cuda:7"), runs_dir=out), "cuda"),
    ]
    for call, message in refused:
        with pytest.raises(tl.TicketlabError, match=message) as error:
            call()
        assert "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())


def test_runs_on_data_held_in_memory_take_that_data_and_refuse_other_data(tmp_path, one_thread):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 10, generator=g)
    y = (x[:, 0] > 0).long()
    data = tl.Dataset.from_tensors(x[:250], y[:250], x[250:], y[250:], val_size=50)
    recipe = tl.TrainConfig(steps="20it", batch_size=25, eval_every="10it")
    run = tl.imp("mlp_16", data, recipe, levels=1, seeds=[0, 1], runs_dir=tmp_path)  # in this process
    control = tl.controls(run, "random-reinit", levels="1", data=data)
    assert [r["seed"] for r in control.rows] == [0, 1]
    assert tl.stability(run.levels[1].ticket, data, points=3, runs_dir=tmp_path).barrier >= 0
    other = tl.load_dataset("synthetic", train_subset=600)
    with pytest.raises(tl.TicketlabError, match="was made on memory-"):
        tl.stability(run.levels[1].ticket, other, runs_dir=tmp_path)
    with pytest.raises(tl.TicketlabError, match="was made on memory-"):
        tl.controls(run, "random-reinit", data=other)
