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
