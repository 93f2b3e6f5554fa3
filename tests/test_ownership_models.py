"""Ownership on networks of one's own: a CNN with BatchNorm and a residual network are signed and
verified through rescaling (BatchNorm scale folded first), permutation, densification and ONNX;
models whose hidden units cannot be aligned are refused in one line."""

import pytest
import torch

from ticketlab.config import TrainConfig
from ticketlab.data.external import from_tensors
from ticketlab.deploy.export import ticket_model
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.models.registry import prunable_names
from ticketlab.ownership import attacks, jobs
from ticketlab.ownership.keys import generate_key
from ticketlab.ownership.scheme import CURRENT
from ticketlab.ownership.structure import analyse, require_carriers
from ticketlab.ownership.verification import whitebox
from ticketlab.provenance import Provenance
from ticketlab.ticket import Ticket

NETWORKS = [("own_models:BatchNormCNN", {"width": 48}), ("own_models:TinyResNet", {"width": 32})]


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(700, 1, 8, 8, generator=generator)
    y = (x[:, 0, :4].mean(dim=(1, 2)) * 3 + x[:, 0, 4:].mean(dim=(1, 2)) * 5).mul(2).round().clamp(-4, 5).long() + 4
    return from_tensors(x[:600], y[:600], x[600:], y[600:], val_size=50)


def signed(name: str, kwargs: dict, data, folder):
    """A random 30 % ticket of the network, briefly trained, signed with a fresh key (in memory)."""
    cfg = TrainConfig(optimizer="adam", lr=0.005, batch_size=32, steps="60it", eval_every="60it")
    model = create_model(name, data.input_shape, data.num_classes, seed=0, kwargs=kwargs)
    generator = torch.Generator().manual_seed(1)
    params = dict(model.named_parameters())
    mask = Mask({n: torch.rand(params[n].shape, generator=generator) < 0.3 for n in prunable_names(model)})
    ticket = Ticket(model.architecture, mask, {k: v.clone() for k, v in model.state_dict().items()}, None,
                    Provenance(train_config=cfg, data_seed=0, rewind_step=0))
    key = generate_key()
    result, claim, report = jobs.sign(ticket, key, data, cfg, folder / "work", quiet=True)
    state = attacks.weights_of(result)
    result.save(folder / "signed.safetensors")
    record = jobs.build_record(folder / "signed.safetensors", state, "ticket", claim, key, "", "2026-01-01T00:00:00+00:00")
    return result, claim, record, key, report


@pytest.mark.parametrize("name,kwargs", NETWORKS)
def test_a_network_of_ones_own_is_signed_and_verified_through_every_free_transformation(
        name, kwargs, images, tmp_path, one_thread):
    ticket, claim, record, key, report = signed(name, kwargs, images, tmp_path)
    assert sum(report["bits_per_carrier"].values()) == CURRENT.bits and len(report["bits_per_carrier"]) >= 3
    assert whitebox(attacks.weights_of(ticket), record, claim, key)["agreeing_bits"] >= 0.97 * CURRENT.bits
    generator = torch.Generator().manual_seed(5)
    moved = attacks.permute(attacks.rescale(ticket, 1e4, generator), 1.0, generator)  # BatchNorm γ, β rescaled
    with torch.no_grad():
        x = images.test_x[:32]
        assert torch.allclose(ticket_model(ticket)(x), ticket_model(moved)(x), rtol=1e-3, atol=1e-3)
    disguised = attacks.disguise(ticket, 1e4, generator)  # rescaled, permuted and densified
    result = whitebox(attacks.weights_of(disguised), record, claim, key)
    assert result["verified"] and result["agreeing_bits"] >= 0.93 * CURRENT.bits, result
    out = tmp_path / "copy.onnx"
    jobs.write_attacked(disguised, out, "onnx")  # BatchNorm folded into the convs by the exporter
    from ticketlab.ownership.canonical import load_model
    state, kind = load_model(out, record["architecture"])
    assert kind == "onnx" and not any("running_var" in k for k in state)
    result = whitebox(state, record, claim, key)
    assert result["verified"] and result["agreeing_bits"] >= 0.93 * CURRENT.bits, result


def test_a_model_whose_hidden_units_pass_through_attention_is_refused_in_one_line():
    model = create_model("own_models:PatchTransformer", (1, 28, 28), 10, seed=0)
    structure = analyse(model)
    with pytest.raises(TicketlabError, match="TransformerEncoder") as error:
        require_carriers(structure, CURRENT.blocks_per_bit * CURRENT.bits, CURRENT.bits)
    assert "\n" not in str(error.value) and "cannot carry a white-box signature" in str(error.value)


def test_registry_models_have_carriers_where_their_units_can_be_aligned():
    for name, shape in (("conv2", (1, 28, 28)), ("resnet20", (3, 32, 32)), ("vgg11", (3, 32, 32)),
                        ("lenet_300_100", (1, 28, 28))):
        structure = analyse(create_model(name, shape, 10, seed=0))
        require_carriers(structure, CURRENT.blocks_per_bit * CURRENT.bits, CURRENT.bits)
        assert structure.layers[structure.carriers[-1]].out_role == "output"
    # every layer of mnist1d_cnn can carry bits, but 2,400 connections are too few for the scheme's bits
    structure = analyse(create_model("mnist1d_cnn", (1, 40), 10, seed=0))
    assert len(structure.carriers) == 4
    with pytest.raises(TicketlabError, match="too small to carry a 1024-bit signature"):
        require_carriers(structure, CURRENT.blocks_per_bit * CURRENT.bits, CURRENT.bits)
