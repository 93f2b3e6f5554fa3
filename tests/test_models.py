"""Tests for the model registry (ticketlab.models): names, shapes, parameter counts, prunable
tensors, seeded initialization, ResNet block structure and rebuilding from an architecture spec."""

import json
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models import (
    create_model,
    describe_models,
    model_from_architecture,
    model_names,
    output_name,
    prunable_names,
    resnet_name,
)

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)
MNIST1D = (1, 40)
IMAGE_MODELS = ["lenet_300_100", "mlp_300_100", "conv2", "conv4", "conv6",
                "resnet20", "resnet20_w32", "resnet_blocks_3_2_3", "vgg11", "vgg16", "vgg19"]


def forward(model, input_shape, batch=2):
    return model(torch.randn(batch, *input_shape))


# ---- parameter counts, written from the architecture descriptions ----------------------------

def linear(n_in, n_out):
    return n_in * n_out + n_out


def conv(c_in, c_out, kernel, bias):
    return c_in * c_out * kernel * kernel + (c_out if bias else 0)


def batchnorm(channels):
    return 2 * channels  # weight and bias; running statistics are buffers


def expected_mlp_params(num_inputs, hidden, num_classes):
    widths = [num_inputs, *hidden, num_classes]
    return sum(linear(a, b) for a, b in zip(widths, widths[1:]))


def expected_convnet_params(input_shape, stage_widths, num_classes):
    channels, height, width = input_shape
    total = 0
    for w in stage_widths:
        total += conv(channels, w, 3, bias=True) + conv(w, w, 3, bias=True)
        channels, height, width = w, height // 2, width // 2
    return total + linear(channels * height * width, 256) + linear(256, 256) + linear(256, num_classes)


def expected_resnet_params(in_channels, blocks_per_stage, num_classes, width=16):
    total = conv(in_channels, width, 3, bias=False) + batchnorm(width)
    previous = width
    for stage, num_blocks in enumerate(blocks_per_stage):
        w = width * 2**stage
        for block in range(num_blocks):
            block_in = previous if block == 0 else w
            total += conv(block_in, w, 3, bias=False) + batchnorm(w) + conv(w, w, 3, bias=False) + batchnorm(w)
            if block == 0 and stage > 0:  # stride-2, widening block: 1x1 projection + BN
                total += conv(block_in, w, 1, bias=False) + batchnorm(w)
        previous = w
    return total + linear(4 * width if len(blocks_per_stage) == 3 else previous, num_classes)


VGG_CONV_WIDTHS = {
    11: [64, 128, 256, 256, 512, 512, 512, 512],
    16: [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
    19: [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512],
}


def expected_vgg_params(in_channels, depth, num_classes):
    widths = [in_channels, *VGG_CONV_WIDTHS[depth]]
    convs = sum(conv(a, b, 3, bias=False) + batchnorm(b) for a, b in zip(widths, widths[1:]))
    return convs + linear(512, num_classes)


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def test_lenet_param_count_matches_the_paper_arithmetic():
    model = create_model("lenet_300_100", MNIST, 10)
    assert count_params(model) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == 266_610


@pytest.mark.parametrize("input_shape", [MNIST, CIFAR])
@pytest.mark.parametrize("depth,widths", [(2, [64]), (4, [64, 128]), (6, [64, 128, 256])])
def test_convnet_param_counts(depth, widths, input_shape):
    model = create_model(f"conv{depth}", input_shape, 10)
    assert count_params(model) == expected_convnet_params(input_shape, widths, 10)


def test_conv2_on_cifar_has_the_papers_4_3M_parameters():
    assert round(count_params(create_model("conv2", CIFAR, 10)) / 1e6, 1) == 4.3


@pytest.mark.parametrize("name,blocks,width", [("resnet20", (3, 3, 3), 16), ("resnet56", (9, 9, 9), 16),
                                               ("resnet20_w32", (3, 3, 3), 32),
                                               ("resnet_blocks_3_2_3", (3, 2, 3), 16)])
@pytest.mark.parametrize("input_shape", [MNIST, CIFAR])
def test_resnet_param_counts(name, blocks, width, input_shape):
    model = create_model(name, input_shape, 10)
    assert count_params(model) == expected_resnet_params(input_shape[0], blocks, 10, width)


def test_resnet20_is_about_0_27M_parameters():
    assert round(count_params(create_model("resnet20", CIFAR, 10)) / 1e6, 2) == 0.27


@pytest.mark.parametrize("depth", [11, 16, 19])
def test_vgg_param_counts(depth):
    assert count_params(create_model(f"vgg{depth}", CIFAR, 100)) == expected_vgg_params(3, depth, 100)
    assert count_params(create_model(f"vgg{depth}", MNIST, 10)) == expected_vgg_params(1, depth, 10)


def test_mnist1d_cnn_param_count():
    # lengths 40 -> 20 -> 10 -> 5 with stride 2 and "same" padding
    expected = (1 * 32 * 5 + 32) + 2 * (32 * 32 * 3 + 32) + linear(32 * 5, 10)
    assert count_params(create_model("mnist1d_cnn", MNIST1D, 10)) == expected


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.integers(1, 48), min_size=1, max_size=3),
       input_shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
       num_classes=st.integers(1, 12))
def test_any_mlp_has_the_formula_param_count_and_output_shape(hidden, input_shape, num_classes):
    model = create_model("mlp_" + "_".join(map(str, hidden)), input_shape, num_classes, seed=0)
    assert count_params(model) == expected_mlp_params(math.prod(input_shape), hidden, num_classes)
    assert len(model.prunable_names) == len(hidden) + 1
    assert forward(model, input_shape, batch=3).shape == (3, num_classes)


# ---- building and forward passes --------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("input_shape,num_classes", [(MNIST, 10), (CIFAR, 100)])
def test_image_models_build_and_give_logits(name, input_shape, num_classes):
    model = create_model(name, input_shape, num_classes, seed=0)
    out = forward(model, input_shape)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("input_shape", [MNIST1D, (1, 17), (2, 64)])
def test_mnist1d_cnn_accepts_any_length(input_shape):
    model = create_model("mnist1d_cnn", input_shape, 10, seed=0)
    assert forward(model, input_shape, batch=3).shape == (3, 10)


def registered_examples():
    """Every literal name and every example given in model_names()."""
    names = []
    for entry in model_names():
        pattern, _, examples = entry.partition(" (e.g. ")
        names += [e.strip() for e in examples.rstrip(")").split(",")] if examples else [pattern]
    return names


def test_every_registered_name_and_example_builds():
    names = registered_examples()
    assert {"lenet_300_100", "conv2", "conv4", "conv6", "vgg11", "vgg16", "vgg19", "mnist1d_cnn",
            "resnet20"} <= set(names)
    for name in names:
        input_shape = MNIST1D if name.startswith("mnist1d") else CIFAR
        model = create_model(name, input_shape, 10, seed=0)
        assert forward(model, input_shape).shape == (2, 10), name


def test_describe_models_pairs_every_name_with_one_line():
    described = describe_models()
    assert [pattern for pattern, _ in described] == model_names()
    assert all(text and "\n" not in text for _, text in described)


def test_lenet_is_mlp_300_100():
    lenet = create_model("lenet_300_100", MNIST, 10, seed=4)
    mlp = create_model("mlp_300_100", MNIST, 10, seed=4)
    assert lenet.architecture["name"] == "lenet_300_100"
    assert lenet.state_dict().keys() == mlp.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(lenet.state_dict().values(), mlp.state_dict().values()))


@pytest.mark.parametrize("name,input_shape", [("vgg16", (3, 8, 8)), ("vgg11", (1, 28, 5)), ("resnet20", (1, 5, 7)),
                                              ("conv6", (1, 8, 8)), ("resnet20", (3, 1, 1))])
def test_small_and_non_square_images_work(name, input_shape):
    model = create_model(name, input_shape, 7, seed=0)
    assert forward(model, input_shape).shape == (2, 7)


def test_vgg_state_dict_keys_do_not_depend_on_image_size():
    # Skipped pools are nn.Identity, so a 28x28 and a 32x32 VGG have the same layout.
    assert create_model("vgg16", MNIST, 10).state_dict().keys() == \
        create_model("vgg16", (1, 32, 32), 10).state_dict().keys()


def test_batchnorm_models_run_in_eval_mode_with_batch_of_one():
    for name in ["resnet20", "vgg11"]:
        model = create_model(name, MNIST, 10, seed=0).eval()
        assert forward(model, MNIST, batch=1).shape == (1, 10)


# ---- prunable tensors and the output layer ----------------------------------------------------

ALL_MODELS = [(name, CIFAR) for name in IMAGE_MODELS] + [("mnist1d_cnn", MNIST1D)]


@pytest.mark.parametrize("name,input_shape", ALL_MODELS)
def test_prunable_names_are_exactly_the_conv_and_linear_weights(name, input_shape):
    model = create_model(name, input_shape, 10)
    params = dict(model.named_parameters())
    # In these models every tensor of rank >= 2 is a conv/linear weight, and only those are.
    assert model.prunable_names == [n for n, p in params.items() if p.dim() >= 2]
    assert prunable_names(model) == model.prunable_names
    layer_weights = {f"{prefix}.weight" for prefix, m in model.named_modules()
                     if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
    assert set(model.prunable_names) == layer_weights
    assert not any(n.endswith("bias") or "bn" in n for n in model.prunable_names)


@pytest.mark.parametrize("name,count", [("lenet_300_100", 3), ("conv2", 5), ("conv6", 9), ("vgg11", 9),
                                        ("vgg16", 14), ("vgg19", 17),
                                        ("resnet20", 1 + 18 + 2 + 1),  # stem, 9 blocks x 2, 2 projections, fc
                                        ("resnet56", 1 + 54 + 2 + 1)])
def test_prunable_counts_by_hand(name, count):
    assert len(create_model(name, CIFAR, 10).prunable_names) == count


def test_resnet_prunable_includes_stem_projections_and_classifier():
    names = create_model("resnet20", CIFAR, 10).prunable_names
    assert "stem_conv.weight" in names and "classifier.weight" in names
    assert sum(".shortcut." in n for n in names) == 2


@pytest.mark.parametrize("name,input_shape", ALL_MODELS)
def test_output_name_is_the_layer_that_produces_the_logits(name, input_shape):
    model = create_model(name, input_shape, 10, seed=0).eval()
    params = dict(model.named_parameters())
    out_name = output_name(model)
    assert out_name == model.output_name == model.prunable_names[-1]
    assert params[out_name].shape[0] == 10
    # Zeroing that layer's weight and bias must zero the logits: it really is the output layer.
    with torch.no_grad():
        params[out_name].zero_()
        params[out_name.removesuffix("weight") + "bias"].zero_()
    assert torch.count_nonzero(forward(model, input_shape)) == 0


def test_functions_work_on_models_built_without_create_model():
    from ticketlab.models import CifarResNet
    model = CifarResNet(3, 10, blocks_per_stage=(2, 1, 1))
    assert prunable_names(model)[0] == "stem_conv.weight"
    assert output_name(model) == "classifier.weight"


# ---- seeded initialization --------------------------------------------------------------------

def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name,input_shape", [("lenet_300_100", MNIST), ("resnet20", CIFAR),
                                              ("vgg11", MNIST), ("conv4", CIFAR), ("mnist1d_cnn", MNIST1D)])
def test_same_seed_same_weights_different_seed_different(name, input_shape):
    a, b, c = (state(create_model(name, input_shape, 10, seed=s)) for s in (11, 11, 12))
    assert all(torch.equal(a[k], b[k]) for k in a)
    differing = [k for k in model_weights_only(a) if not torch.equal(a[k], c[k])]
    assert differing == model_weights_only(a)  # every random tensor differs under another seed


def model_weights_only(state_dict):
    return [k for k, v in state_dict.items() if v.dim() >= 2]


def test_seeded_create_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    create_model("resnet20", CIFAR, 10, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    # ... and does not depend on it either.
    torch.manual_seed(1)
    a = state(create_model("conv2", MNIST, 10, seed=5))
    torch.manual_seed(2)
    b = state(create_model("conv2", MNIST, 10, seed=5))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unseeded_create_model_draws_from_the_global_rng():
    torch.manual_seed(9)
    a = state(create_model("lenet_300_100", MNIST, 10))
    b = state(create_model("lenet_300_100", MNIST, 10))
    torch.manual_seed(9)
    c = state(create_model("lenet_300_100", MNIST, 10))
    assert not torch.equal(a["hidden.0.weight"], b["hidden.0.weight"])
    assert torch.equal(a["hidden.0.weight"], c["hidden.0.weight"])


def test_initialization_is_kaiming_normal_with_zero_biases():
    model = create_model("lenet_300_100", MNIST, 10, seed=0)
    weight = model.hidden[0].weight  # 300 x 784 samples of N(0, 2 / 784)
    std = math.sqrt(2 / 784)  # fan_in, not fan_out (300)
    assert abs(weight.std().item() / std - 1) < 0.02
    assert abs(weight.mean().item()) < 0.01 * std
    # Normal, not uniform with the same std: about 8.3% of normal draws lie beyond sqrt(3) std,
    # where a uniform distribution has none.
    tail = (weight.abs() > math.sqrt(3) * std).float().mean().item()
    assert 0.07 < tail < 0.1
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if n.endswith("bias"))

    resnet = create_model("resnet20", CIFAR, 10, seed=0)
    conv_weight = resnet.stages[2][1].conv1.weight  # fan_in 64 * 9
    assert abs(conv_weight.std().item() / math.sqrt(2 / (64 * 9)) - 1) < 0.03
    for module in resnet.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


# ---- errors -----------------------------------------------------------------------------------

def assert_one_line_listing_known_models(message):
    assert "\n" not in message
    for entry in model_names():
        assert entry in message


@pytest.mark.parametrize("name", ["resnet", "alexnet", "vgg13", "conv3", "mlp", "mlp_", "RESNET20", "lenet"])
def test_unknown_names_list_the_known_ones(name):
    with pytest.raises(TicketlabError) as error:
        create_model(name, CIFAR, 10)
    assert name in str(error.value)
    assert_one_line_listing_known_models(str(error.value))


@pytest.mark.parametrize("name", ["resnet21", "resnet2", "resnet18", "resnet52_w32"])
def test_resnet_depth_must_be_6n_plus_2(name):
    with pytest.raises(TicketlabError, match=re.escape("6n+2")) as error:
        create_model(name, CIFAR, 10)
    assert_one_line_listing_known_models(str(error.value))


@pytest.mark.parametrize("name,input_shape,num_classes,hint", [
    ("resnet20", (784,), 10, "image"),
    ("vgg16", (1, 28), 10, "image"),
    ("conv6", (1, 4, 4), 10, "8x8"),
    ("mnist1d_cnn", MNIST, 10, "(1, 40)"),
    ("mlp_300_0", MNIST, 10, "positive"),
    ("resnet_blocks_3_0_3", CIFAR, 10, "at least one block"),
    ("resnet20_w0", CIFAR, 10, "width"),
    ("lenet_300_100", (1, 0, 28), 10, "input_shape"),
    ("lenet_300_100", (), 10, "input_shape"),
    ("lenet_300_100", MNIST, 0, "num_classes"),
])
def test_bad_shapes_and_sizes_are_user_errors(name, input_shape, num_classes, hint):
    with pytest.raises(TicketlabError) as error:
        create_model(name, input_shape, num_classes)
    assert hint in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed_is_a_user_error(seed):
    with pytest.raises(TicketlabError, match="seed"):
        create_model("lenet_300_100", MNIST, 10, seed=seed)


# ---- ResNet block structure -------------------------------------------------------------------

def identity_flags(model):
    return [[block.has_identity_shortcut for block in stage] for stage in model.stages]


def test_resnet20_block_structure():
    model = create_model("resnet20", CIFAR, 10)
    assert isinstance(model.stages, nn.ModuleList) and all(isinstance(s, nn.Sequential) for s in model.stages)
    assert identity_flags(model) == [[True, True, True], [False, True, True], [False, True, True]]
    for stage in model.stages:
        for block in stage:
            has_projection_params = any(True for _ in block.shortcut.parameters())
            assert has_projection_params != block.has_identity_shortcut


def test_custom_blocks_per_stage_builds_and_runs():
    model = create_model("resnet_blocks_3_2_3", MNIST, 10, seed=0)
    assert model.blocks_per_stage == (3, 2, 3)
    assert identity_flags(model) == [[True, True, True], [False, True], [False, True, True]]
    assert forward(model, MNIST).shape == (2, 10)
    assert create_model("resnet_blocks_1_1_1_1", CIFAR, 10).stages[3][0].conv1.out_channels == 128


def test_identity_blocks_can_be_removed_and_theta0_copied_into_the_shallower_net():
    deep = create_model("resnet20", CIFAR, 10, seed=0)
    shallow = create_model(resnet_name((3, 2, 3)), CIFAR, 10, seed=1)
    # Drop block stages.1.2 (identity shortcut): later blocks in the stage shift down by one.
    deep_state = deep.state_dict()
    kept = {k: v for k, v in deep_state.items() if not k.startswith("stages.1.2.")}
    shallow.load_state_dict(kept, strict=True)
    assert torch.equal(shallow.stages[2][0].conv1.weight, deep.stages[2][0].conv1.weight)
    assert forward(shallow, CIFAR).shape == (2, 10)


def test_resnet_name_round_trips():
    assert resnet_name((3, 3, 3)) == "resnet20"
    assert resnet_name((9, 9, 9), 32) == "resnet56_w32"
    assert resnet_name((3, 2, 3)) == "resnet_blocks_3_2_3"
    for blocks, width in [((3, 3, 3), 16), ((5, 4, 5), 8), ((2, 2), 16)]:
        model = create_model(resnet_name(blocks, width), CIFAR, 10)
        assert model.blocks_per_stage == blocks and model.base_width == width


# ---- rebuilding from the architecture spec ----------------------------------------------------

@pytest.mark.parametrize("name,input_shape", [("resnet_blocks_3_2_3", MNIST), ("lenet_300_100", MNIST),
                                              ("mnist1d_cnn", MNIST1D), ("vgg11", CIFAR)])
def test_model_from_architecture_round_trips_through_json(name, input_shape):
    model = create_model(name, input_shape, 10, seed=3)
    spec = json.loads(json.dumps(model.architecture))  # as stored in a ticket file
    assert spec == {"name": name, "input_shape": list(input_shape), "num_classes": 10}
    rebuilt = model_from_architecture(spec, seed=3)
    assert rebuilt.architecture == model.architecture
    original, copy = model.state_dict(), rebuilt.state_dict()
    assert original.keys() == copy.keys() and all(torch.equal(original[k], copy[k]) for k in original)


@pytest.mark.parametrize("spec", [{"name": "resnet20", "input_shape": [3, 32, 32]},
                                  {"name": "resnet20", "input_shape": [3, 32, 32], "num_classes": 10, "depth": 20},
                                  ["resnet20", [3, 32, 32], 10]])
def test_bad_architecture_specs_are_user_errors(spec):
    with pytest.raises(TicketlabError, match="architecture"):
        model_from_architecture(spec)
