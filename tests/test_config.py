"""Run identity: hashes are pinned so a change that would rename existing runs is caught."""

from ticketlab.config import DataConfig, ModelConfig, PruneConfig, TrainConfig, config_hash, derive_seed


def sections(**changes):
    configs = {"data": DataConfig(), "model": ModelConfig(), "train": TrainConfig(), "prune": PruneConfig()}
    for key, value in changes.items():
        section, field = key.split("__")
        setattr(configs[section], field, value)
    return configs


def test_pinned_hashes():
    assert config_hash("imp", sections()) == "d1b400be4f"
    assert config_hash("imp", sections(model__model="conv2", train__lr=0.05, prune__rewind_step="500it")) == "f32cf6f212"
    train_only = {k: v for k, v in sections().items() if k != "prune"}
    assert config_hash("train", train_only) == "23cf7bfd05"


def test_where_data_lives_and_the_device_do_not_change_identity():
    assert config_hash("imp", sections(data__data_root="/elsewhere", train__device="cuda")) == config_hash("imp", sections())


def test_setting_an_option_to_its_default_keeps_the_name():
    assert config_hash("imp", sections(train__lr=0.1)) == config_hash("imp", sections())
    assert config_hash("imp", sections(train__lr=0.2)) != config_hash("imp", sections())


def test_derived_seeds_are_independent_per_purpose_and_stable():
    assert derive_seed(0, "init") != derive_seed(0, "data") != derive_seed(1, "init")
    assert derive_seed(3, "init") == derive_seed(3, "init")
    assert 0 <= derive_seed(0, "init") < 2 ** 56


# ---- configs validate themselves: the Python API gets the checks the command line gets -----------

import dataclasses  # noqa: E402
import math  # noqa: E402

import pytest  # noqa: E402

from ticketlab.config import FilterConfig, LayerConfig, PaiConfig  # noqa: E402
from ticketlab.cts.config import CtsConfig  # noqa: E402
from ticketlab.errors import TicketlabError  # noqa: E402
from ticketlab.supertickets.config import SuperConfig  # noqa: E402

NAN = math.nan


@pytest.mark.parametrize("cls", [DataConfig, ModelConfig, TrainConfig, PruneConfig, PaiConfig, LayerConfig, FilterConfig,
                                 CtsConfig, SuperConfig])
def test_defaults_are_valid(cls):
    cls()


@pytest.mark.parametrize("cls, values, flag", [
    (TrainConfig, {"lr": NAN}, "--lr"), (TrainConfig, {"lr": -0.1}, "--lr"), (TrainConfig, {"lr": "0.1"}, "--lr"),
    (TrainConfig, {"momentum": 1.0}, "--momentum"), (TrainConfig, {"weight_decay": math.inf}, "--weight-decay"),
    (TrainConfig, {"gamma": -1}, "--gamma"), (TrainConfig, {"batch_size": True}, "--batch-size"),
    (TrainConfig, {"steps": "0it"}, "--steps"), (TrainConfig, {"steps": 10 ** 9}, "--steps"),
    (TrainConfig, {"eval_every": "0ep"}, "--eval-every"), (TrainConfig, {"device": "gpu"}, "--device"),
    (TrainConfig, {"optimizer": "lion"}, "--optimizer"), (TrainConfig, {"nesterov": True}, "--nesterov"),
    (PruneConfig, {"levels": 10 ** 6}, "--levels"), (PruneConfig, {"prune_fraction": NAN}, "--prune-fraction"),
    (PruneConfig, {"schedule": "0.5,0.7"}, "--schedule"), (PruneConfig, {"rewind_step": "-1it"}, "rewind-step"),
    (PaiConfig, {"density": 0}, "--density"), (PaiConfig, {"iterations": 0}, "--iterations"),
    (DataConfig, {"pad": -1}, "--pad"), (DataConfig, {"train_subset": -1}, "--train-subset"),
    (LayerConfig, {"remove": -1}, "--remove"), (FilterConfig, {"target_filters": -1}, "--target-filters"),
    (CtsConfig, {"search_steps": "inf%"}, "--search-steps"), (CtsConfig, {"smoothing": NAN}, "smoothing"),
    (SuperConfig, {"rho": NAN}, "--rho"), (SuperConfig, {"retrain": "1e3it"}, "retrain"),
])
def test_a_config_refuses_a_bad_value_when_made_or_replaced(cls, values, flag):
    with pytest.raises(TicketlabError, match=flag):
        cls(**values)
    with pytest.raises(TicketlabError, match=flag):
        dataclasses.replace(cls(), **values)
