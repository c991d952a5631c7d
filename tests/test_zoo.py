"""Model zoo: shapes, parameter counts and state-dict keys equal to the torch.nn networks,
weights exported from PyTorch give the same outputs here, summary FLOPs."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import zoo
from tapegrad.zoo_torch import torch_model

SMALL = {  # cheap configurations for the tests: (kwargs, input shape)
    "lenet5": ({}, (2, 1, 28, 28)),
    "vgg_small": ({"width": 8, "input_size": 16}, (2, 1, 16, 16)),
    "mobilenet_small": ({"width": 8, "input_size": 16}, (2, 1, 16, 16)),
    "resnet8": ({"width": 4, "input_size": 16}, (2, 1, 16, 16)),
    "conv_autoencoder": ({"width": 4}, (2, 1, 28, 28)),
}


def test_lenet5_is_the_classic():
    m = zoo.lenet5()
    assert sum(p.size for p in m.parameters()) == 61706
    assert list(m.state_dict()) == [
        "features.0.weight",
        "features.0.bias",
        "features.3.weight",
        "features.3.bias",
        "classifier.0.weight",
        "classifier.0.bias",
        "classifier.2.weight",
        "classifier.2.bias",
        "classifier.4.weight",
        "classifier.4.bias",
    ]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_backward_shapes(name):
    kwargs, shape = SMALL[name]
    tg.manual_seed(0)
    m = zoo.get_model(name, **kwargs)
    x = tg.Tensor(np.random.default_rng(0).random(shape).astype(np.float32))
    out = m(x)
    if name == "conv_autoencoder":
        assert out.shape == shape and 0 <= out.numpy().min() and out.numpy().max() <= 1
        loss = F.mse_loss(out, x)
    else:
        assert out.shape == (shape[0], 10)
        loss = F.cross_entropy(out, np.array([1, 2]))
    loss.backward()
    for k, p in m.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, k
        assert np.isfinite(p.grad.numpy()).all(), k


def test_models_take_channels_classes_and_size():
    m = zoo.vgg_small(in_channels=3, num_classes=7, input_size=32, width=4)
    assert m(tg.Tensor(np.zeros((1, 3, 32, 32), np.float32))).shape == (1, 7)
    m = zoo.lenet5(in_channels=3, num_classes=4, input_size=32)
    assert m(tg.Tensor(np.zeros((1, 3, 32, 32), np.float32))).shape == (1, 4)
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        zoo.get_model("alexnet")
    with pytest.raises(ValueError, match="input_size must be divisible by 4, got 30"):
        zoo.vgg_small(input_size=30)


# --- the same networks in torch.nn --------------------------------------------------


FULL = {  # the default configurations (counts checked at full size, outputs at SMALL)
    "lenet5": {"input_size": 28},
    "vgg_small": {"input_size": 32, "width": 32},
    "mobilenet_small": {"input_size": 32, "width": 32},
    "resnet8": {"input_size": 32, "width": 16},
    "conv_autoencoder": {"input_size": 28, "width": 16},
}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(FULL))
def test_parameter_count_and_keys_equal_torch(name):
    pytest.importorskip("torch")
    ours = zoo.get_model(name)
    theirs = torch_model(name, **FULL[name])
    assert sum(p.size for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SMALL))
def test_torch_weights_load_and_give_the_same_outputs(name):
    torch = pytest.importorskip("torch")
    kwargs, shape = SMALL[name]
    size = kwargs.get("input_size", 28)
    width = kwargs.get("width")
    torch.manual_seed(0)
    theirs = torch_model(name, input_size=size, width=width).eval()
    with torch.no_grad():  # non-trivial running statistics so eval-mode BN is exercised
        for mod in theirs.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
    ours = zoo.get_model(name, **kwargs).eval()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(1).random(shape).astype(np.float32)
    with tg.no_grad():
        got = ours(tg.Tensor(x)).numpy()
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_summary_lists_layers_params_and_flops():
    text = zoo.summary(zoo.lenet5(), (1, 28, 28), name="lenet5")
    assert "total parameters: 61,706" in text
    # conv 2*28*28*6*25 + conv 2*10*10*16*150 + fc 2*(400*120 + 120*84 + 84*10)
    assert "FLOPs per image (forward): 833,040" in text
    assert "features.3    Conv2d     16x10x10" in text


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SMALL))
def test_summary_flops_match_torch_counter(name):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    kwargs, shape = SMALL[name]
    theirs = torch_model(
        name, input_size=kwargs.get("input_size", 28), width=kwargs.get("width")
    ).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        theirs(torch.zeros((1, *shape[1:])))
    text = zoo.summary(zoo.get_model(name, **kwargs), shape[1:])
    assert f"FLOPs per image (forward): {counter.get_total_flops():,} " in text


@pytest.mark.torch
def test_weights_exported_with_safetensors_torch_load_here(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    theirs = torch_model("lenet5").eval()
    save_file(theirs.state_dict(), str(tmp_path / "lenet.safetensors"))
    ours = zoo.lenet5().eval()
    ours.load_state_dict(tg.load(tmp_path / "lenet.safetensors"))
    x = np.random.default_rng(2).random((3, 1, 28, 28)).astype(np.float32)
    with tg.no_grad():
        got = ours(tg.Tensor(x)).numpy()
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
