"""Every mask-finding method is a registered entry with one interface: the PaI methods, CTS (and the
objectives its tickets record) and IMP/LTR, found by name, dispatched by the jobs, results unchanged."""

import json
import subprocess
import sys

import pytest
import torch

from ticketlab.config import ModelConfig, PaiConfig, TrainConfig, derive_seed
from ticketlab.cts import CtsConfig, search_mask
from ticketlab.cts.config import METHOD_NAMES
from ticketlab.errors import TicketlabError
from ticketlab.models import create_model
from ticketlab.pai import (MASK_METHODS, PAI_METHODS, MaskMethod, MaskRequest, find_mask, finding_method,
                           finding_method_names, mask_method, mask_methods, method_names, recorded_method, register)
from ticketlab.pai.jobs import check_method, check_pai_request
from ticketlab.pai.sanity import IMP_METHODS, ONE_SHOT, sanity_procedure


def test_every_method_is_registered_with_the_whole_interface():
    names = method_names() + ["cts", "imp", "ltr"]
    assert sorted(MASK_METHODS) == sorted(names)
    for name in names:
        method = mask_method(name)
        assert method.name == name and method.family in ("pai", "cts", "lth")
        assert method.help and method.cost and method.score_order in ("largest", "smallest", None)
        assert (method.find is None) == (method.check is None) == (method.family == "lth")
    assert [m.name for m in mask_methods("pai")] == method_names()
    assert [m.name for m in mask_methods("cts")] == ["cts"] and [m.name for m in mask_methods("lth")] == ["imp", "ltr"]


def test_the_pai_entries_follow_the_pai_registry():
    for name, info in PAI_METHODS.items():
        assert mask_method(name).score_order == info.score_order and mask_method(name).help == info.description
    assert mask_method("grasp").score_order == "smallest" and mask_method("random").score_order is None


def test_cts_is_registered_by_cts_with_the_names_its_tickets_record():
    cts = mask_method("cts")
    assert cts.family == "cts" and cts.score_order == "largest" and "Arora" in cts.help
    assert set(cts.recorded) == set(METHOD_NAMES.values()) - {"cts"}
    for recorded in ("cts", "cts-kl", "cts-forward-kl", "cts-feature", "cts-kl-inverted"):
        assert recorded_method(recorded) is cts
    assert recorded_method("snip-inverted") is mask_method("snip")
    with pytest.raises(TicketlabError, match="cts-kl"):
        mask_method("cts-kl")  # what --method takes is cts; the objective picks the variant


def test_imp_and_ltr_are_registered_by_lth_and_checked_through_their_own_sanity():
    assert IMP_METHODS == ("imp", "ltr")
    for name in IMP_METHODS:
        method = mask_method(name)
        assert method.family == "lth" and method.find is None and method.score_order == "largest"
        assert sanity_procedure(name) is method.sanity and method.sanity is not ONE_SHOT
        with pytest.raises(TicketlabError, match="unknown pruning method"):
            check_method(name)  # prune --method does not take them: they find their masks by a run of their own
    assert sanity_procedure("snip") is ONE_SHOT and sanity_procedure("cts") is ONE_SHOT


def test_prune_choices_and_errors_are_unchanged():
    assert finding_method_names() == method_names() + ["cts"]
    with pytest.raises(TicketlabError) as error:
        check_method("bogus")
    assert str(error.value) == f"unknown pruning method 'bogus'; known: {', '.join(method_names() + ['cts'])}"
    with pytest.raises(TicketlabError, match="known: .*synflow, cts, imp, ltr"):
        sanity_procedure("bogus")


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="twice"):
        register(MaskMethod("snip", "pai", "again", "largest", "none", find=lambda r: None, check=lambda *a: None))
    with pytest.raises(ValueError, match="twice"):
        register(MaskMethod("new", "cts", "alias taken", "largest", "none", find=lambda r: None,
                            check=lambda *a: None, recorded=("cts-kl",)))
    assert "new" not in MASK_METHODS


def configs(method: str, density: float = 0.2) -> dict:
    return {"model": ModelConfig(model="mlp_32_16"), "train": TrainConfig(lr=0.1, steps="60it", batch_size=32),
            "pai": PaiConfig(method=method, density=density, score_batch_size=64),
            "cts": CtsConfig(search_steps="6it", batch_size=32)}


@pytest.mark.parametrize("method", ["snip", "synflow", "random"])
def test_dispatch_through_the_registry_finds_the_same_mask_as_find_mask(tiny_data, method):
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=1)
    request = MaskRequest(method, configs(method), model, tiny_data, seed=4)
    found = finding_method(method).find(request)
    direct = find_mask(method, model, tiny_data, 0.2, seed=derive_seed(4, "prune"), batch_size=64)
    assert found.mask.equals(direct.mask) and found.info["method"] == method


def test_cts_through_the_registry_is_the_search_with_its_cost(tiny_data):
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=1)
    config = configs("cts")
    found = finding_method("cts").find(MaskRequest("cts", config, model, tiny_data, seed=4, invert=True))
    direct = search_mask(model, tiny_data, 0.2, 6, config["cts"], seed=derive_seed(4, "prune"), invert=True,
                         training_lr=0.1)
    assert found.mask.equals(direct.mask) and found.info["method"] == "cts-kl"
    assert found.info["examples_used"] == direct.info["masked_forward_examples"] + direct.info["dense_forward_examples"]
    assert found.scores is None and found.info["search_log"] == direct.log


def test_requests_are_checked_through_the_registry(tiny_data):
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=0)
    check_pai_request(configs("snip"), tiny_data, model, "snip", 0.2)
    check_pai_request(configs("cts"), tiny_data, model, "cts", 0.2)
    with pytest.raises(TicketlabError, match="iterations does not apply"):
        check_pai_request({**configs("snip"), "pai": PaiConfig(method="snip", iterations=3)}, tiny_data, model,
                          "snip", 0.2)
    with pytest.raises(TicketlabError, match="search-steps"):
        check_pai_request({**configs("cts"), "cts": CtsConfig(search_steps="0.01%")}, tiny_data, model, "cts", 0.2)
    with pytest.raises(TicketlabError, match="keeps"):
        check_pai_request(configs("cts"), tiny_data, model, "cts", 1e-9)


def test_the_registry_imports_no_family():
    code = ("import json, sys, ticketlab.pai.registry; "
            "print(json.dumps(sorted({m.split('.')[1] for m in sys.modules if m.startswith('ticketlab.')})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {"cts", "lth", "layers", "supertickets", "ownership", "cli", "commands", "api"} & set(json.loads(out))


def test_masks_stay_exact_counts(tiny_data):
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=1)
    for method in ("magnitude", "cts"):
        found = finding_method(method).find(MaskRequest(method, configs(method, 0.1), model, tiny_data, seed=0))
        total = sum(p.numel() for n, p in model.named_parameters() if n in model.prunable_names)
        assert found.mask.num_kept() == round(0.1 * total)
    assert torch.equal(model.state_dict()["hidden.0.weight"],
                       create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=1)
                       .state_dict()["hidden.0.weight"])  # the request's model is left as it was
