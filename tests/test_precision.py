"""Training precision, memory format and device options on the CPU: bf16 autocast, channels-last, the
deterministic mode, the device-side metric counters and batches, and the refusals of what this machine
cannot run. (The same options on a GPU: tests/test_gpu.py.)"""

import pytest
import torch

import ticketlab as tl
from ticketlab.config import TrainConfig, config_hash, derive_seed, validate_train
from ticketlab.data import augment_batch, epoch_permutation, load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.trainer import DeviceCounters, TrainingBatches, train


def random_mask(model, density=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return Mask({n: torch.rand(params[n].shape, generator=generator) < density for n in model.prunable_names})


def test_bf16_trains_lenet_within_one_point_of_fp32(tmp_path, one_thread):
    data = load_dataset("fashion-mnist", train_subset=4000, val_size=500)
    accuracy = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(steps="100it", eval_every="100it", batch_size=64, lr=0.05, momentum=0.9, precision=precision)
        model = create_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
        accuracy[precision] = train(model, data, cfg, out_dir=tmp_path / precision, data_seed=1,
                                    quiet=True)["test_accuracy"]
    assert accuracy["fp32"] > 0.7  # it learned: the comparison means something
    assert abs(accuracy["bf16"] - accuracy["fp32"]) <= 0.01, accuracy


def test_bf16_computes_the_forward_pass_in_bf16_and_keeps_weights_fp32_and_masked(tmp_path, tiny_data, one_thread):
    model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=0)
    mask = random_mask(model)
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append((module.training, output.dtype)))
    train(model, tiny_data, TrainConfig(steps="10it", eval_every="10it", batch_size=32, precision="bf16"),
          out_dir=tmp_path, data_seed=0, mask=mask, quiet=True)
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}  # evaluation stays fp32
    params = dict(model.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())
    for name in mask.names():
        assert torch.all(params[name][~mask[name]] == 0), name


def test_channels_last_trains_a_conv_net_masked_and_resumes_exactly(tmp_path, one_thread):
    data = load_dataset("synthetic-images", train_subset=200)
    cfg = TrainConfig(steps="2ep", eval_every="1ep", batch_size=50, momentum=0.9, channels_last=True)
    full = create_model("conv2", data.input_shape, data.num_classes, seed=0)
    mask = random_mask(full)
    train(full, data, cfg, out_dir=tmp_path / "full", data_seed=0, mask=mask, quiet=True)
    assert all(p.is_contiguous() for p in full.parameters())  # the caller gets its model back as it was

    class Stop(Exception):
        pass

    def stop_in_the_second_epoch(iteration, x, y):
        if iteration == 6:
            raise Stop
        return x, y

    stopped = create_model("conv2", data.input_shape, data.num_classes, seed=0)
    with pytest.raises(Stop):
        train(stopped, data, cfg, out_dir=tmp_path / "resumed", data_seed=0, mask=mask, quiet=True,
              batch_hook=stop_in_the_second_epoch)
    assert all(p.is_contiguous() for p in stopped.parameters())
    resumed = create_model("conv2", data.input_shape, data.num_classes, seed=5)
    train(resumed, data, cfg, out_dir=tmp_path / "resumed", data_seed=0, mask=mask, quiet=True)
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    params = dict(resumed.named_parameters())
    for name in mask.names():
        assert torch.all(params[name][~mask[name]] == 0), name


def test_a_bf16_run_resumes_exactly(tmp_path, tiny_data, one_thread):
    cfg = TrainConfig(steps="3ep", eval_every="5it", batch_size=50, momentum=0.9, precision="bf16")
    full = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=1)
    train(full, tiny_data, cfg, out_dir=tmp_path / "full", data_seed=1, quiet=True)

    class Stop(Exception):
        pass

    def stop_mid_epoch(iteration, x, y):
        if iteration == 17:
            raise Stop
        return x, y

    stopped = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=1)
    with pytest.raises(Stop):
        train(stopped, tiny_data, cfg, out_dir=tmp_path / "resumed", data_seed=1, quiet=True, batch_hook=stop_mid_epoch)
    resumed = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=2)
    train(resumed, tiny_data, cfg, out_dir=tmp_path / "resumed", data_seed=1, quiet=True)
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert (tmp_path / "full" / "metrics.jsonl").read_text() == (tmp_path / "resumed" / "metrics.jsonl").read_text()


def test_deterministic_mode_reruns_identically_and_restores_the_global_setting(tmp_path, tiny_data, one_thread):
    cfg = TrainConfig(steps="12it", eval_every="6it", batch_size=32, deterministic=True)
    weights = []
    for run in range(2):
        model = create_model("mlp_32_16", tiny_data.input_shape, tiny_data.num_classes, seed=0)
        train(model, tiny_data, cfg, out_dir=tmp_path / str(run), data_seed=0, quiet=True)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not torch.are_deterministic_algorithms_enabled()


def test_device_counters_sum_exactly_as_the_host_did():
    generator = torch.Generator().manual_seed(0)
    losses = torch.rand(200, generator=generator) * 3  # float32, as a step's mean loss is
    sizes = torch.randint(1, 129, (200,), generator=generator).tolist()
    host = 0.1234567  # a resumed run continues the checkpoint's sum
    counters = DeviceCounters(torch.device("cpu"), host, 7)
    correct = 7
    for loss, size in zip(losses, sizes):
        host += loss.item() * size
        logits = torch.randn(size, 3, generator=generator)
        y = torch.randint(0, 3, (size,), generator=generator)
        correct += int((logits.argmax(1) == y).sum())
        counters.add(loss, size, logits, y)
    assert counters.read() == (host, correct)  # the same float64 additions in the same order: equal to the bit
    counters.reset()
    assert counters.read() == (0.0, 0)


def test_an_epochs_augmentation_drawn_at_once_equals_the_batch_by_batch_draws():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(70, 3, 8, 8, generator=generator), torch.arange(70)
    batches = TrainingBatches(x, y, 32, 3, data_seed=5, augment="flip-crop")
    for iteration in (4, 0, 1, 2, 3, 5, 8):  # out of order too: any iteration, any time
        epoch, index = divmod(iteration, 3)
        order = epoch_permutation(70, 5, epoch)[index * 32:(index + 1) * 32]
        expected = augment_batch(x[order], "flip-crop",
                                 torch.Generator().manual_seed(derive_seed(5, f"augment:{iteration}")))
        got_x, got_y = batches.at(iteration)
        assert torch.equal(got_x, expected) and torch.equal(got_y, y[order]), iteration


def test_the_new_options_keep_run_names_and_precision_changes_them():
    base = config_hash("train", {"train": TrainConfig()})
    for same in (TrainConfig(channels_last=True), TrainConfig(compile=True), TrainConfig(deterministic=True),
                 TrainConfig(precision="fp32")):
        assert config_hash("train", {"train": same}) == base
    assert config_hash("train", {"train": TrainConfig(precision="bf16")}) != base


@pytest.mark.parametrize("fields, words", [
    ({"precision": "fp8"}, "--precision must be one of fp32, bf16, fp16"),
    ({"channels_last": "yes"}, "--channels-last must be true or false"),
    ({"compile": 1}, "--compile must be true or false"),
])
def test_bad_option_values_are_one_line(fields, words):
    with pytest.raises(TicketlabError, match=words) as caught:
        TrainConfig(**fields)
    assert "\n" not in str(caught.value)


def test_fp16_on_the_cpu_is_refused_in_one_line_before_anything_is_written(cli, tmp_path):
    with pytest.raises(TicketlabError, match="fp16 runs on GPUs only"):
        validate_train(TrainConfig(precision="fp16"))
    res = cli("train", "--dataset", "synthetic", "--precision", "fp16", "--runs-dir", tmp_path / "runs")
    assert res.code == 2 and res.err.count("\n") == 1 and "fp16" in res.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_an_absent_gpu_is_one_line_and_exit_2(cli, tmp_path):
    for command in (["train"], ["imp", "--levels", "1"], ["prune", "--method", "synflow"]):
        res = cli(*command, "--dataset", "synthetic", "--device", "cuda", "--runs-dir", tmp_path / "runs")
        assert res.code == 2 and res.err.count("\n") == 1 and "no CUDA GPU" in res.err, res.err
    assert not (tmp_path / "runs").exists()


def test_a_gpu_index_beyond_the_machines_gpus_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    res = cli("train", "--dataset", "synthetic", "--device", "cuda:7", "--runs-dir", tmp_path / "runs")
    assert res.code == 2 and "has 1 CUDA GPU(s), cuda:0 to cuda:0" in res.err and res.err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_an_absent_apple_gpu_is_refused(cli, tmp_path):
    res = cli("train", "--dataset", "synthetic", "--device", "mps", "--runs-dir", tmp_path / "runs")
    assert res.code == 2 and "no mps device" in res.err and res.err.count("\n") == 1


def test_the_options_are_on_the_command_line(cli):
    res = cli("train", "--help")
    for option in ("--precision {fp32,bf16,fp16}", "--channels-last", "--compile", "--deterministic"):
        assert option in " ".join(res.out.split()), option


def test_the_api_refuses_what_the_cli_refuses(tmp_path):
    data = load_dataset("synthetic", train_subset=100)
    with pytest.raises(TicketlabError, match="fp16 runs on GPUs only"):
        tl.train("mlp_32_16", data, recipe=TrainConfig(precision="fp16"), runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
