"""A ticket's provenance as a dataclass: round trips through the file, keeps what it does not know, writes
the same bytes as the metadata dict it replaced, and gives the recipe that trained the ticket."""

import dataclasses
import json
import warnings

import pytest
import torch
from safetensors import safe_open

from ticketlab.config import DataConfig, TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.files import write_checked_safetensors
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.provenance import RECORDED, Provenance
from ticketlab.ticket import METADATA_KEY, NoRecipeWarning, Ticket, load_ticket, read_metadata, timings_path

DATA = DataConfig(dataset="synthetic", train_subset=600)
RECIPE = TrainConfig(lr=0.05, momentum=0.9, steps="60it", batch_size=32, eval_every="20it")


def model_and_mask():
    model = create_model("mlp_32_16", (1, 8, 8), 10, seed=0)
    generator = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(p.shape, generator=generator) < 0.5 for n, p in model.named_parameters()
                 if n in model.prunable_names})
    return model, mask


def full_provenance() -> Provenance:
    return Provenance(
        dataset="synthetic", data_config=DATA, train_config=RECIPE, method="snip", level=2, seed=3, init_seed=11,
        data_seed=12, rewind_step=20, retrain="rewind",
        metrics={"test_accuracy": 0.5, "early_stop_iteration": 40, "wall_time_seconds": 1.25},
        search_cost={"train_examples": 100, "wall_time_seconds": 0.5}, collapsed_layers=["hidden.1.weight"],
        pai={"method": "snip", "examples_used": 128, "rounds": 1}, costs={"flops": 10, "training_speedup": 1.5},
        dense_ticket="runs/train/ticket.safetensors", original_architecture={"name": "mlp_32_16"},
        extra={"removed_blocks": [[0, 1]], "a_future_field": {"nested": [1, 2.5, None]}})


def test_every_recorded_field_round_trips_through_the_file(tmp_path):
    model, mask = model_and_mask()
    provenance = full_provenance()
    assert set(RECORDED) == {f.name for f in dataclasses.fields(Provenance)} - {"extra"}
    Ticket(model.architecture, mask, model.state_dict(), None, provenance).save(tmp_path / "t.safetensors")
    loaded = load_ticket(tmp_path / "t.safetensors")
    assert loaded.provenance == provenance
    assert isinstance(loaded.provenance.data_config, DataConfig) and isinstance(loaded.provenance.train_config, TrainConfig)
    # Timings live beside the file and come back merged; the file itself holds none.
    assert json.loads(timings_path(tmp_path / "t.safetensors").read_text()) == {
        "metrics": {"wall_time_seconds": 1.25}, "search_cost": {"wall_time_seconds": 0.5},
        "costs": {"training_speedup": 1.5}}
    with safe_open(tmp_path / "t.safetensors", "pt") as f:
        raw = json.loads(f.metadata()[METADATA_KEY])
    assert "wall_time_seconds" not in raw["metrics"] and raw["removed_blocks"] == [[0, 1]]


def test_unset_fields_are_not_written(tmp_path):
    model, mask = model_and_mask()
    Ticket(model.architecture, mask, model.state_dict(), None, Provenance(method="dense")).save(tmp_path / "t.safetensors")
    meta = read_metadata(tmp_path / "t.safetensors")
    assert not set(RECORDED) - {"method"} & set(meta) and meta["method"] == "dense"
    assert load_ticket(tmp_path / "t.safetensors").provenance == Provenance(method="dense")


def old_style_file(path, model, mask, info: dict) -> None:
    """A ticket file as ticketlab wrote it when provenance was a free dict merged into the metadata."""
    tensors = {f"mask/{n}": t for n, t in mask.packed().items()}
    tensors.update({f"init/{k}": v for k, v in model.state_dict().items()})
    meta = {**info, "format_version": 2, "architecture": model.architecture, "density": mask.density(),
            "layers": mask.layer_densities(), "kept": mask.num_kept(), "prunable": mask.num_total(),
            "mask_shapes": mask.shapes()}
    write_checked_safetensors(path, tensors, METADATA_KEY, meta)


def test_a_ticket_written_from_the_old_dict_loads_and_saves_to_the_same_bytes(tmp_path):
    model, mask = model_and_mask()
    info = {"dataset": "synthetic", "data_config": vars(DATA).copy(), "method": "imp", "level": 1, "seed": 0,
            "init_seed": 5, "data_seed": 6, "rewind_step": 0, "retrain": "rewind", "train_config": vars(RECIPE).copy(),
            "metrics": {"test_accuracy": 0.25}, "search_cost": {"train_examples": 640},
            "supertickets_config": {"density": 0.3}, "transfer_source": None}
    old_style_file(tmp_path / "old.safetensors", model, mask, info)
    ticket = load_ticket(tmp_path / "old.safetensors")
    assert ticket.provenance.extra == {"supertickets_config": {"density": 0.3}, "transfer_source": None}
    assert ticket.provenance.to_metadata() == info
    ticket.save(tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "old.safetensors").read_bytes()


def test_the_recipe_is_the_recorded_one_or_the_default_with_a_warning(tmp_path):
    model, mask = model_and_mask()
    ticket = Ticket(model.architecture, mask, model.state_dict(), None, full_provenance())
    recipe = ticket.recipe()
    assert recipe == RECIPE and recipe is not ticket.provenance.train_config  # a copy: editing it edits nothing
    assert ticket.data_config() == DATA
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ticket.recipe()  # a recorded recipe: no warning
    bare = Ticket(model.architecture, mask, model.state_dict())
    with pytest.warns(NoRecipeWarning, match="records no training recipe"):
        assert bare.recipe() == TrainConfig()
    with pytest.raises(TicketlabError, match="records no dataset"):
        bare.data_config()


def test_provenance_is_checked_when_built():
    with pytest.raises(TicketlabError, match="train_config must be a TrainConfig"):
        Provenance(train_config=vars(RECIPE))
    with pytest.raises(TicketlabError, match="'method'.*field of its own"):
        Provenance(extra={"method": "snip"})
    model, mask = model_and_mask()
    with pytest.raises(TicketlabError, match="must be a Provenance"):
        Ticket(model.architecture, mask, model.state_dict(), None, {"method": "snip"})


def test_replace_copies_extra():
    provenance = full_provenance()
    copy = provenance.replace(metrics={"test_accuracy": 1.0})
    copy.extra["attack"] = {"kind": "prune"}
    assert "attack" not in provenance.extra and copy.metrics == {"test_accuracy": 1.0}
    assert copy.train_config == provenance.train_config


def test_a_crafted_provenance_field_is_refused_in_one_line(tmp_path):
    model, mask = model_and_mask()
    old_style_file(tmp_path / "bad.safetensors", model, mask, {"rewind_step": "20"})
    with pytest.raises(TicketlabError, match="field 'rewind_step' has the wrong type") as error:
        load_ticket(tmp_path / "bad.safetensors")
    assert "\n" not in str(error.value)
    old_style_file(tmp_path / "bad2.safetensors", model, mask, {"train_config": {"no_such_option": 1}})
    with pytest.raises(TicketlabError, match="train_config does not match"):
        load_ticket(tmp_path / "bad2.safetensors")
