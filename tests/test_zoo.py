"""Model zoo: shapes, parameter counts and state-dict keys equal to the torch.nn networks,
weights exported from PyTorch give the same outputs here, summary FLOPs."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import zoo

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


def _torch_models(torch, name, in_channels=1, num_classes=10, input_size=28, width=None):
    tn = torch.nn

    def cbr(cin, cout, k=3, stride=1, groups=1):
        return [
            tn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            tn.BatchNorm2d(cout),
            tn.ReLU(),
        ]

    if name == "lenet5":
        side = ((input_size // 2) - 4) // 2

        class LeNet(tn.Module):
            def __init__(self):
                super().__init__()
                self.features = tn.Sequential(
                    tn.Conv2d(in_channels, 6, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2),
                    tn.Conv2d(6, 16, 5), tn.ReLU(), tn.MaxPool2d(2),
                )  # fmt: skip
                self.flatten = tn.Flatten()
                self.classifier = tn.Sequential(
                    tn.Linear(16 * side * side, 120), tn.ReLU(), tn.Linear(120, 84), tn.ReLU(),
                    tn.Linear(84, num_classes),
                )  # fmt: skip

            def forward(self, x):
                return self.classifier(self.flatten(self.features(x)))

        return LeNet()
    if name == "vgg_small":
        w = width

        class VGG(tn.Module):
            def __init__(self):
                super().__init__()
                self.features = tn.Sequential(
                    *cbr(in_channels, w), *cbr(w, w), tn.MaxPool2d(2), tn.Dropout(0.25),
                    *cbr(w, 2 * w), *cbr(2 * w, 2 * w), tn.MaxPool2d(2), tn.Dropout(0.25),
                )  # fmt: skip
                s = input_size // 4
                self.classifier = tn.Sequential(
                    tn.Flatten(), tn.Linear(2 * w * s * s, 256), tn.ReLU(), tn.Dropout(0.5),
                    tn.Linear(256, num_classes),
                )  # fmt: skip

            def forward(self, x):
                return self.classifier(self.features(x))

        return VGG()
    if name == "mobilenet_small":

        class DS(tn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.depthwise = tn.Sequential(*cbr(cin, cin, 3, stride, groups=cin))
                self.pointwise = tn.Sequential(*cbr(cin, cout, 1))

            def forward(self, x):
                return self.pointwise(self.depthwise(x))

        class Mobile(tn.Module):
            def __init__(self):
                super().__init__()
                layers, c = [*cbr(in_channels, width)], width
                for cout, stride in zoo.MobileNetSmall.CONFIG:
                    cout = cout * width // 32
                    layers.append(DS(c, cout, stride))
                    c = cout
                self.features = tn.Sequential(*layers)
                self.pool = tn.Identity()
                self.classifier = tn.Linear(c, num_classes)

            def forward(self, x):
                return self.classifier(self.features(x).mean((2, 3)))

        return Mobile()
    if name == "resnet8":

        class Block(tn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.bn1 = tn.BatchNorm2d(cin)
                self.conv1 = tn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.bn2 = tn.BatchNorm2d(cout)
                self.conv2 = tn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.relu = tn.ReLU()
                proj = stride != 1 or cin != cout
                self.shortcut = tn.Conv2d(cin, cout, 1, stride, bias=False) if proj else None

            def forward(self, x):
                out = self.relu(self.bn1(x))
                skip = self.shortcut(out) if self.shortcut is not None else x
                return self.conv2(self.relu(self.bn2(self.conv1(out)))) + skip

        class Res(tn.Module):
            def __init__(self):
                super().__init__()
                w = width
                self.conv1 = tn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
                self.layer1 = Block(w, w, 1)
                self.layer2 = Block(w, 2 * w, 2)
                self.layer3 = Block(2 * w, 4 * w, 2)
                self.bn = tn.BatchNorm2d(4 * w)
                self.relu = tn.ReLU()
                self.fc = tn.Linear(4 * w, num_classes)

            def forward(self, x):
                x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
                return self.fc(self.relu(self.bn(x)).mean((2, 3)))

        return Res()
    if name == "conv_autoencoder":
        w = width

        class AE(tn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = tn.Sequential(
                    tn.Conv2d(in_channels, w, 3, 2, 1), tn.ReLU(), tn.Conv2d(w, 2 * w, 3, 2, 1),
                    tn.ReLU(),
                )  # fmt: skip
                self.decoder = tn.Sequential(
                    tn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1), tn.ReLU(),
                    tn.ConvTranspose2d(w, in_channels, 3, 2, 1, output_padding=1), tn.Sigmoid(),
                )  # fmt: skip

            def forward(self, x):
                return self.decoder(self.encoder(x))

        return AE()
    raise KeyError(name)


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
    torch = pytest.importorskip("torch")
    ours = zoo.get_model(name)
    theirs = _torch_models(torch, name, **FULL[name])
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
    theirs = _torch_models(torch, name, input_size=size, width=width).eval()
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
    theirs = _torch_models(
        torch, name, input_size=kwargs.get("input_size", 28), width=kwargs.get("width")
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
    theirs = _torch_models(torch, "lenet5").eval()
    save_file(theirs.state_dict(), str(tmp_path / "lenet.safetensors"))
    ours = zoo.lenet5().eval()
    ours.load_state_dict(tg.load(tmp_path / "lenet.safetensors"))
    x = np.random.default_rng(2).random((3, 1, 28, 28)).astype(np.float32)
    with tg.no_grad():
        got = ours(tg.Tensor(x)).numpy()
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
