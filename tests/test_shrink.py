"""Tests for ticketlab.deploy.shrink: the shrunk model computes the masked model's function, is
smaller exactly where units are dead, keeps what must stay, and rebuilds from its architecture."""

import copy
import functools
import json

import pytest
import torch
from torch import nn

from ticketlab.deploy.shrink import count_parameters, shrink
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import create_model, model_from_architecture

IMAGE = (3, 16, 16)
FAMILIES = [("mlp_32_16", (1, 8, 8)), ("conv2", IMAGE), ("vgg11", (3, 8, 8)), ("resnet8", IMAGE),
            ("resnet20", IMAGE), ("mnist1d_cnn", (1, 40))]


# ---- helpers -----------------------------------------------------------------------------------

@torch.no_grad()
def randomize_(model):
    """Non-zero biases and BatchNorms with non-trivial statistics and affine parameters."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.5, 0.5)
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
        elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and module.bias is not None:
            module.bias.uniform_(-0.5, 0.5)
    return model


@functools.cache
def _base_model(name, input_shape, seed):
    torch.manual_seed(seed)
    return randomize_(create_model(name, input_shape, 10, seed=seed)).eval()


def make_model(name, input_shape, seed=0):
    return copy.deepcopy(_base_model(name, input_shape, seed))  # building VGG-11 takes a while


def random_mask(model, density, seed=0):
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return Mask({name: torch.rand(params[name].shape, generator=generator) < density
                 for name in model.prunable_names})


def full_mask(model):
    return Mask.ones(model)


def outputs(model, input_shape, mask=None, seed=1):
    model = copy.deepcopy(model).eval()
    if mask is not None:
        mask.apply_(model)
    x = torch.randn(5, *input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def assert_same_function(model, mask, shrunk, input_shape):
    expected, got = outputs(model, input_shape, mask), outputs(shrunk, input_shape)
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * scale)


def check_shrunk(model, mask, input_shape):
    """Shrink, then check the function, the mask and the round trip; returns (shrunk, shrunk mask)."""
    shrunk, shrunk_mask = shrink(model, mask)
    assert_same_function(model, mask, shrunk, input_shape)
    shrunk_mask.check_matches(shrunk)
    assert shrunk_mask.names() == mask.names()
    assert shrunk_mask.num_kept() <= mask.num_kept()
    params = dict(shrunk.named_parameters())
    for name in shrunk_mask.names():  # the weights come masked already
        assert not params[name][~shrunk_mask[name]].any()
    assert shrunk.prunable_names == model.prunable_names and shrunk.output_name == model.output_name
    assert shrunk.training == model.training
    rebuilt = model_from_architecture(json.loads(json.dumps(shrunk.architecture)))
    rebuilt.load_state_dict(shrunk.state_dict())
    torch.testing.assert_close(outputs(rebuilt, input_shape), outputs(shrunk, input_shape), rtol=0, atol=0)
    return shrunk, shrunk_mask


def sizes(model, path):
    module = model.get_submodule(path)
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return module.num_features
    return module.in_channels, module.out_channels


def mask_with(model, edits):
    """The full mask with `edits(tensors)` applied: a dict name -> bool tensor to change in place."""
    tensors = {name: t.clone() for name, t in full_mask(model).tensors.items()}
    edits(tensors)
    return Mask(tensors)


# ---- every family, random masks ----------------------------------------------------------------

@pytest.mark.parametrize("name,input_shape", FAMILIES)
@pytest.mark.parametrize("density", [0.5, 0.05, 0.01])
def test_random_masks_keep_the_function(name, input_shape, density):
    model = make_model(name, input_shape)
    mask = random_mask(model, density)
    shrunk, shrunk_mask = check_shrunk(model, mask, input_shape)
    if density == 0.01:  # at 1% every family has dead units
        assert shrunk.architecture["shapes"]
    if shrunk.architecture["shapes"]:
        assert count_parameters(shrunk) < count_parameters(model)
    else:
        assert count_parameters(shrunk) == count_parameters(model)
        assert shrunk_mask.num_kept() == mask.num_kept()


@pytest.mark.parametrize("name,input_shape", FAMILIES)
def test_a_full_mask_changes_nothing(name, input_shape):
    model = make_model(name, input_shape)
    mask = full_mask(model)
    shrunk, shrunk_mask = check_shrunk(model, mask, input_shape)
    assert shrunk.architecture == {**model.architecture, "shapes": {}}
    assert count_parameters(shrunk) == count_parameters(model)
    assert shrunk_mask.equals(mask)


# ---- MLP: the two rules, neuron by neuron --------------------------------------------------------

MLP = ("mlp_32_16", (1, 8, 8))


def test_a_neuron_nothing_reads_is_removed_with_its_incoming_weights():
    model = make_model(*MLP)
    mask = mask_with(model, lambda t: t["classifier.weight"][:, 3].zero_())
    shrunk, shrunk_mask = check_shrunk(model, mask, MLP[1])
    assert sizes(shrunk, "hidden.1") == (32, 15) and sizes(shrunk, "classifier") == (15, 10)
    assert sizes(shrunk, "hidden.0") == (64, 32)
    assert shrunk_mask.num_kept() == mask.num_kept() - 32  # hidden.1's row 3 was all live
    assert count_parameters(shrunk) == count_parameters(model) - 32 - 1 - 10


def test_a_constant_neuron_is_folded_into_the_next_bias():
    model = make_model(*MLP)
    with torch.no_grad():
        model.hidden[0].bias[5] = 0.7  # relu(0.7) = 0.7 whatever the input
    mask = mask_with(model, lambda t: t["hidden.0.weight"][5].zero_())
    shrunk, shrunk_mask = check_shrunk(model, mask, MLP[1])
    assert sizes(shrunk, "hidden.0") == (64, 31) and sizes(shrunk, "hidden.1") == (31, 16)
    expected_bias = model.hidden[1].bias + 0.7 * model.hidden[1].weight[:, 5]
    torch.testing.assert_close(shrunk.hidden[1].bias, expected_bias)
    assert shrunk_mask.num_kept() == mask.num_kept() - 16  # its outgoing weights now live in the bias
    keep = [i for i in range(32) if i != 5]
    assert torch.equal(shrunk.hidden[1].weight, model.hidden[1].weight[:, keep])


def test_a_neuron_stuck_at_zero_is_removed_and_biases_stay():
    model = make_model(*MLP)
    with torch.no_grad():
        model.hidden[0].bias[5] = -0.7  # relu(-0.7) = 0: it adds nothing
    mask = mask_with(model, lambda t: t["hidden.0.weight"][5].zero_())
    shrunk, _ = check_shrunk(model, mask, MLP[1])
    assert sizes(shrunk, "hidden.0") == (64, 31)
    assert torch.equal(shrunk.hidden[1].bias, model.hidden[1].bias)


def test_a_constant_neuron_read_by_a_layer_without_bias_is_kept():
    model = make_model(*MLP)
    no_bias = nn.Linear(32, 16, bias=False)
    with torch.no_grad():
        no_bias.weight.copy_(model.hidden[1].weight)
        model.hidden[0].bias[5] = 0.7
    model.hidden[1] = no_bias
    mask = mask_with(model, lambda t: t["hidden.0.weight"][5].zero_())
    shrunk, _ = shrink(model, mask)
    assert_same_function(model, mask, shrunk, MLP[1])
    assert sizes(shrunk, "hidden.0") == (64, 32) and shrunk.architecture["shapes"] == {}


def test_dead_units_cascade_backwards_and_forwards():
    model = make_model(*MLP)

    def edits(t):
        t["hidden.1.weight"][:, 0].zero_()      # hidden.0 unit 0: nothing reads it
        t["hidden.0.weight"][1].zero_()         # hidden.0 unit 1: constant
        t["hidden.1.weight"][2, 2:].zero_()     # hidden.1 unit 2 only reads unit 1, so it becomes constant too
    mask = mask_with(model, edits)
    shrunk, shrunk_mask = check_shrunk(model, mask, MLP[1])
    assert sizes(shrunk, "hidden.0") == (64, 30) and sizes(shrunk, "hidden.1") == (30, 15)
    assert sizes(shrunk, "classifier") == (15, 10)
    # Dropped live weights: hidden.0 unit 0's incoming row (64), hidden.0 unit 1's outgoing column
    # (16, folded or zero), then hidden.1 unit 2's outgoing column (10, constant once unit 1 is folded).
    assert shrunk_mask.num_kept() == mask.num_kept() - 64 - 16 - 10


def test_a_fully_collapsed_mlp_keeps_one_unit_per_layer():
    model = make_model(*MLP)
    mask = mask_with(model, lambda t: t["hidden.1.weight"].zero_())
    shrunk, shrunk_mask = check_shrunk(model, mask, MLP[1])
    assert sizes(shrunk, "hidden.0") == (64, 1) and sizes(shrunk, "hidden.1") == (1, 1)
    assert sizes(shrunk, "classifier") == (1, 10)
    assert shrunk_mask.num_kept() == 0  # logits are the classifier's bias, with hidden.1 folded in
    assert not torch.equal(shrunk.classifier.bias, model.classifier.bias)


# ---- convolutions: padding, flatten, BatchNorm ----------------------------------------------------

def test_a_constant_channel_read_by_a_padded_conv_is_kept():
    model = make_model("conv2", IMAGE)
    with torch.no_grad():
        model.features[0].bias[7] = 0.5  # constant 0.5 inside the image, but zero padding at the borders
    mask = mask_with(model, lambda t: t["features.0.weight"][7].zero_())
    shrunk, _ = check_shrunk(model, mask, IMAGE)
    assert sizes(shrunk, "features.0") == (3, 64) and shrunk.architecture["shapes"] == {}


def test_a_channel_stuck_at_zero_before_a_padded_conv_is_removed():
    model = make_model("conv2", IMAGE)
    with torch.no_grad():
        model.features[0].bias[7] = -0.5
    mask = mask_with(model, lambda t: t["features.0.weight"][7].zero_())
    shrunk, _ = check_shrunk(model, mask, IMAGE)
    assert sizes(shrunk, "features.0") == (3, 63) and sizes(shrunk, "features.2") == (63, 64)


def test_a_constant_channel_before_flatten_is_folded_into_the_linear():
    model = make_model("conv2", IMAGE)
    with torch.no_grad():
        model.features[2].bias[9] = 0.3
    mask = mask_with(model, lambda t: t["features.2.weight"][9].zero_())
    shrunk, shrunk_mask = check_shrunk(model, mask, IMAGE)
    block = 8 * 8  # the channel's features after the 2x2 pool of a 16x16 image
    assert sizes(shrunk, "features.2") == (64, 63) and sizes(shrunk, "fc1") == (63 * block, 256)
    assert shrunk_mask.num_kept() == mask.num_kept() - 256 * block


def test_a_channel_unread_by_the_first_linear_is_removed():
    model = make_model("conv2", IMAGE)
    mask = mask_with(model, lambda t: t["fc1.weight"].view(256, 64, 64)[:, 4].zero_())
    shrunk, shrunk_mask = check_shrunk(model, mask, IMAGE)
    assert sizes(shrunk, "features.2") == (64, 63) and sizes(shrunk, "fc1") == (63 * 64, 256)
    assert shrunk_mask.num_kept() == mask.num_kept() - 64 * 3 * 3


def test_mnist1d_constant_channel_folds_into_the_classifier():
    model = make_model("mnist1d_cnn", (1, 40))
    with torch.no_grad():
        model.convs[2].bias[3] = 0.4
    mask = mask_with(model, lambda t: t["convs.2.weight"][3].zero_())
    shrunk, _ = check_shrunk(model, mask, (1, 40))
    assert sizes(shrunk, "convs.2") == (32, 31) and sizes(shrunk, "classifier") == (31 * 5, 10)


def test_vgg_constant_channel_after_batchnorm_folds_into_the_classifier():
    model = make_model("vgg11", (3, 8, 8))
    mask = mask_with(model, lambda t: t["features.25.weight"][11].zero_())
    shrunk, _ = check_shrunk(model, mask, (3, 8, 8))
    assert sizes(shrunk, "features.25") == (512, 511) and sizes(shrunk, "features.26") == 511
    assert sizes(shrunk, "classifier") == (511, 10)


def test_vgg_unread_channel_leaves_its_batchnorm():
    model = make_model("vgg11", (3, 8, 8))
    mask = mask_with(model, lambda t: t["features.4.weight"][:, 6].zero_())
    shrunk, _ = check_shrunk(model, mask, (3, 8, 8))
    assert sizes(shrunk, "features.0") == (3, 63) and sizes(shrunk, "features.1") == 63
    assert sizes(shrunk, "features.4") == (63, 128)
    bn, old = shrunk.features[1], model.features[1]
    keep = [i for i in range(64) if i != 6]
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(bn, name), getattr(old, name)[keep])


# ---- ResNets: block channels and the residual stream ---------------------------------------------

def test_resnet_block_with_all_internal_channels_dead_keeps_one():
    model = make_model("resnet8", IMAGE)
    mask = mask_with(model, lambda t: t["stages.1.0.conv2.weight"].zero_())
    shrunk, _ = check_shrunk(model, mask, IMAGE)
    assert sizes(shrunk, "stages.1.0.conv1") == (16, 1) and sizes(shrunk, "stages.1.0.bn1") == 1
    assert sizes(shrunk, "stages.1.0.conv2") == (1, 32)
    assert count_parameters(shrunk) < count_parameters(model)


def test_resnet_block_channel_at_zero_is_removed_and_at_a_constant_is_kept():
    model = make_model("resnet8", IMAGE)
    with torch.no_grad():
        model.stages[0][0].bn1.bias[2] = -5.0  # BN of a 0 pre-activation, then ReLU: exactly 0
        model.stages[0][0].bn1.bias[3] = 5.0   # a positive constant, read by the padded conv2: kept

    def edits(t):
        t["stages.0.0.conv1.weight"][2].zero_()
        t["stages.0.0.conv1.weight"][3].zero_()
    mask = mask_with(model, edits)
    shrunk, _ = check_shrunk(model, mask, IMAGE)
    assert sizes(shrunk, "stages.0.0.conv1") == (16, 15) and sizes(shrunk, "stages.0.0.conv2") == (15, 16)


STAGE0_READERS = ["stages.1.0.conv1.weight", "stages.1.0.shortcut.0.weight"]


@pytest.mark.parametrize("name,blocks", [("resnet8", 1), ("resnet20", 3)])
def test_resnet_stream_channel_unused_everywhere_is_removed_from_the_whole_stage(name, blocks):
    model = make_model(name, IMAGE)
    readers = [f"stages.0.{b}.conv1.weight" for b in range(blocks)] + STAGE0_READERS

    def edits(t):
        for reader in readers:
            t[reader][:, 5].zero_()
    mask = mask_with(model, edits)
    shrunk, _ = check_shrunk(model, mask, IMAGE)
    writers = ["stem_conv"] + [f"stages.0.{b}.conv2" for b in range(blocks)]
    norms = ["stem_bn"] + [f"stages.0.{b}.bn2" for b in range(blocks)]
    assert all(sizes(shrunk, path)[1] == 15 for path in writers)
    assert all(sizes(shrunk, path) == 15 for path in norms)
    assert all(sizes(shrunk, reader.removesuffix(".weight"))[0] == 15 for reader in readers)
    assert count_parameters(shrunk) < count_parameters(model)


def test_resnet_stream_channel_read_somewhere_is_kept():
    model = make_model("resnet8", IMAGE)

    def edits(t):
        t["stages.0.0.conv1.weight"][:, 5].zero_()
        t["stages.1.0.conv1.weight"][:, 5].zero_()  # the projection shortcut still reads channel 5
    mask = mask_with(model, edits)
    shrunk, _ = check_shrunk(model, mask, IMAGE)
    assert shrunk.architecture["shapes"] == {}


def test_resnet_last_stream_channel_unread_by_the_classifier_goes():
    model = make_model("resnet8", IMAGE)
    mask = mask_with(model, lambda t: t["classifier.weight"][:, 7].zero_())
    shrunk, _ = check_shrunk(model, mask, IMAGE)
    assert sizes(shrunk, "stages.2.0.conv2") == (64, 63) and sizes(shrunk, "stages.2.0.shortcut.0") == (32, 63)
    assert sizes(shrunk, "stages.2.0.shortcut.1") == 63 and sizes(shrunk, "classifier") == (63, 10)


# ---- inputs, outputs, repeated shrinking, the caller's state -------------------------------------

def test_inputs_and_logits_are_never_removed():
    model = make_model(*MLP)

    def edits(t):
        t["hidden.0.weight"][:, 0].zero_()    # input pixel 0 unread
        t["classifier.weight"][4].zero_()     # logit 4 is its bias alone
    mask = mask_with(model, edits)
    shrunk, _ = check_shrunk(model, mask, MLP[1])
    assert shrunk.architecture["shapes"] == {}


def test_shrinking_a_shrunk_model_again_changes_nothing():
    model = make_model("resnet8", IMAGE)
    mask = random_mask(model, 0.02)
    shrunk, shrunk_mask = shrink(model, mask)
    again, again_mask = check_shrunk(shrunk, shrunk_mask, IMAGE)
    assert again.architecture == shrunk.architecture and again_mask.equals(shrunk_mask)
    assert count_parameters(again) == count_parameters(shrunk)


def test_shrinking_leaves_the_model_the_mask_and_the_random_stream_alone():
    model = make_model("conv2", IMAGE).train()
    mask = random_mask(model, 0.01)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tensors = {k: v.clone() for k, v in mask.tensors.items()}
    rng = torch.get_rng_state()
    shrunk, _ = shrink(model, mask)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(tensors[k], v) for k, v in mask.tensors.items())
    assert shrunk.training


def test_count_parameters_counts_parameters_not_buffers():
    model = create_model("resnet8", IMAGE, 10, seed=0)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(nn.BatchNorm2d(4)) == 8
    assert count_parameters(nn.Linear(3, 2)) == 8


def test_shrink_errors_are_user_errors():
    model = make_model(*MLP)
    with pytest.raises(TicketlabError, match="does not fit"):
        shrink(model, full_mask(make_model("mlp_16_16", (1, 8, 8))))
    with pytest.raises(TicketlabError, match="not Linear/Conv weights"):
        shrink(model, Mask({**full_mask(model).tensors, "hidden.0.bias": torch.ones(32)}))
    bare = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(TicketlabError, match="architecture"):
        shrink(bare, Mask({"0.weight": torch.ones(2, 4)}))


# ---- rebuilding from "shapes" --------------------------------------------------------------------

def test_seeded_rebuilds_of_a_shrunk_architecture_are_identical():
    model = make_model("resnet8", IMAGE)
    shrunk, _ = shrink(model, random_mask(model, 0.01))
    first = model_from_architecture(shrunk.architecture, seed=4)
    second = model_from_architecture(shrunk.architecture, seed=4)
    assert first.architecture == shrunk.architecture
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert [v.shape for v in first.state_dict().values()] == [v.shape for v in shrunk.state_dict().values()]


@pytest.mark.parametrize("shapes,message", [
    ([1, 2], "shapes must be a dict"),
    ({"nowhere": {"type": "Linear", "in_features": 2, "out_features": 2, "bias": True}}, "no module"),
    ({"classifier": {"type": "Conv2d", "in_channels": 2, "out_channels": 2}}, "must be a dict with type"),
    ({"classifier": {"type": "Linear", "in_features": 0, "out_features": 10, "bias": True}}, "positive int"),
    ({"classifier": {"type": "Linear", "in_features": 4, "out_features": 10, "bias": 1}}, "true or false"),
    ({"stages": {"type": "Linear", "in_features": 4, "out_features": 10, "bias": True}}, "cannot be resized"),
])
def test_bad_shapes_are_user_errors(shapes, message):
    spec = {"name": "resnet8", "input_shape": [3, 16, 16], "num_classes": 10, "shapes": shapes}
    with pytest.raises(TicketlabError, match=message):
        model_from_architecture(spec)


# ---- models outside the registry: what the analysis does not know, it keeps ----------------------

class TwoPaths(nn.Module):
    """conv -> shared ReLU -> (torch.cat with itself: unknown) -> conv, and nn.Flatten before the Linear."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 1)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(4 * 5 * 5, 3)
        self.prunable_names = ["a.weight", "b.weight", "classifier.weight"]
        self.output_name = "classifier.weight"
        self.architecture = {"name": "two_paths", "input_shape": [2, 5, 5], "num_classes": 3}

    def forward(self, x):
        x = self.relu(self.a(x))
        x = self.relu(self.b(torch.cat([x, x], dim=1)))
        return self.classifier(self.flatten(x))


def test_unknown_operations_keep_their_channels_and_known_ones_still_shrink():
    torch.manual_seed(0)
    model = randomize_(TwoPaths()).eval()

    def edits(t):
        t["b.weight"][:, 1].zero_()                          # a's channel 1 is unread, but cat is unknown
        t["classifier.weight"].view(3, 4, 25)[:, 2].zero_()  # b's channel 2 is unread: after nn.Flatten
    mask = Mask({name: torch.ones_like(p, dtype=torch.bool) for name, p in model.named_parameters()
                 if name in model.prunable_names})
    edits(mask.tensors)
    shrunk, shrunk_mask = shrink(model, mask)
    assert_same_function(model, mask, shrunk, (2, 5, 5))
    assert sizes(shrunk, "a") == (2, 4) and sizes(shrunk, "b") == (8, 3)
    assert sizes(shrunk, "classifier") == (75, 3)
    assert shrunk_mask.num_kept() == mask.num_kept() - 7  # b's row 2, less its column 1 already masked
