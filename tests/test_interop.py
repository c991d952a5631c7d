"""DLPack exchange with NumPy and PyTorch (memory shared), and from_torch on the zoo's
PyTorch twins and on user-style models."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import zoo, zoo_torch

from ._deploy import eval_forward, rel_err

torch = pytest.importorskip("torch")
tn = torch.nn

pytestmark = pytest.mark.torch


def test_tensor_to_numpy_and_torch_shares_memory():
    t = tg.Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert t.__dlpack_device__() == (1, 0)
    a = np.from_dlpack(t)
    assert np.shares_memory(a, t.data)
    a[0, 0] = 100.0
    assert t.data[0, 0] == 100.0
    pt = torch.from_dlpack(t)
    assert pt.dtype == torch.float32 and tuple(pt.shape) == (3, 4)
    pt[1, 1] = -5.0
    assert t.data[1, 1] == -5.0 and a[1, 1] == -5.0
    # a strided view keeps its strides
    v = t.T
    pv = torch.from_dlpack(v)
    assert torch.equal(pv, torch.from_numpy(np.ascontiguousarray(v.data)))
    pv[0, 2] = 7.0
    assert t.data[2, 0] == 7.0


def test_from_dlpack_shares_memory_with_torch_and_numpy():
    src = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    t = tg.from_dlpack(src)
    assert isinstance(t, tg.Tensor) and t.dtype == np.float64 and t.shape == (2, 3)
    src[0, 1] = 42.0
    assert t.data[0, 1] == 42.0
    t.data[1, 2] = -1.0
    assert src[1, 2].item() == -1.0
    arr = np.ones((4, 5), np.float32)[:, ::2]
    u = tg.from_dlpack(arr)
    assert np.shares_memory(u.data, arr) and u.shape == (4, 3)
    y = (tg.from_dlpack(torch.ones(3)) * 2).sum()
    assert y.item() == 6.0


def test_from_dlpack_refuses_what_it_cannot_share():
    with pytest.raises(TypeError, match="from_dlpack: list is not a DLPack producer"):
        tg.from_dlpack([1.0, 2.0])
    with pytest.raises(TypeError, match="detach"):
        tg.from_dlpack(torch.ones(2, requires_grad=True))

    class OnGPU:
        def __dlpack__(self, **kw):
            raise AssertionError("must not be asked")

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(TypeError, match="device"):
        tg.from_dlpack(OnGPU())


def _trained_looking(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (tn.BatchNorm1d, tn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) * 0.3 + 1)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
    return model.eval()


def _torch_eval(model, x):
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", zoo.available())
def test_zoo_twins_convert_with_their_weights(name):
    side = zoo.DEFAULT_INPUT[name]
    width = {"vgg_small": 8, "mobilenet_small": 8, "resnet8": 4, "conv_autoencoder": 4}
    extra = {"width": width[name]} if name in width else {}
    twin = _trained_looking(zoo_torch.torch_model(name, 1, 10, side, **extra))
    model = tg.from_torch(twin)
    assert not model.training
    assert list(model.state_dict()) == list(twin.state_dict())
    mine = zoo.get_model(name, input_size=side, **extra)
    assert list(mine.state_dict()) == list(model.state_dict())
    x = np.random.default_rng(0).standard_normal((3, 1, side, side)).astype(np.float32)
    assert rel_err(eval_forward(model, x), _torch_eval(twin, x)) < 1e-5
    # the weights are copies: training the torch model does not move the tapegrad one
    before = eval_forward(model, x)
    for p in twin.parameters():
        p.data.zero_()
    assert np.array_equal(eval_forward(model, x), before)


class UserNet(tn.Module):
    """A user-style model: residual, concatenation, functional calls, view(size(0), -1)."""

    def __init__(self):
        super().__init__()
        self.stem = tn.Sequential(tn.Conv2d(3, 8, 3, padding=1), tn.BatchNorm2d(8), tn.ReLU())
        self.blocks = tn.ModuleList([tn.Conv2d(8, 8, 3, padding=1) for _ in range(2)])
        self.side = tn.Conv2d(3, 4, 1)
        self.norm = tn.GroupNorm(4, 12)
        self.pool = tn.AdaptiveAvgPool2d(2)
        self.head = tn.Linear(48, 5)
        self.drop = tn.Dropout(0.3)
        self.scale = tn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        h = self.stem(x)
        for b in self.blocks:
            h = torch.relu(b(h)) + h
        h = torch.cat([h, self.side(x)], dim=1)
        h = self.pool(torch.nn.functional.relu(self.norm(h)))
        h = self.drop(h.view(h.size(0), -1)) * self.scale
        return torch.nn.functional.log_softmax(self.head(h), dim=1)


def test_user_model_converts_and_agrees():
    torch.manual_seed(0)
    twin = _trained_looking(UserNet())
    model = tg.from_torch(twin)
    assert list(model.state_dict()) == list(twin.state_dict())
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert rel_err(eval_forward(model, x), _torch_eval(twin, x)) < 1e-5
    twin.train()
    assert tg.from_torch(twin).training


def test_unsupported_layers_and_ops_are_named():
    seq = tn.Sequential(tn.Conv2d(1, 2, 3), tn.ReLU(), tn.Sequential(tn.PReLU()))
    with pytest.raises(tg.interop.ConversionError, match=r"2\.0 is a torch.nn.PReLU"):
        tg.from_torch(seq)

    class Sine(tn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tn.Linear(3, 3)

        def forward(self, x):
            return torch.sin(self.fc(x))

    err = tg.interop.ConversionError
    with pytest.raises(err, match=r"forward of 1 \(Sine\) calls torch\.sin,"):
        tg.from_torch(tn.Sequential(tn.Identity(), tn.ModuleDict({"body": Sine()})["body"]))
    with pytest.raises(tg.interop.ConversionError, match="padding_mode='reflect'"):
        tg.from_torch(tn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        tg.from_torch(np.zeros(3))
