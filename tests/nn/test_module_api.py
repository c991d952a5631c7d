"""Module containers and traversal, dtype casts and grad flags, nn.init: PyTorch's
behaviour and state-dict keys."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn as nn


def _block(lib):
    return lib.Sequential(lib.Conv2d(1, 2, 3), lib.BatchNorm2d(2), lib.ReLU())


class Net:
    """The same small network for both libraries, built with containers."""

    @staticmethod
    def build(lib):
        class M(lib.Module):
            def __init__(self):
                super().__init__()
                self.blocks = lib.ModuleList([_block(lib), lib.Identity()])
                self.blocks.append(lib.Conv2d(2, 2, 1))
                self.heads = lib.ModuleDict({"a": lib.Linear(2, 3), "b": lib.Linear(2, 1)})
                self.heads["c"] = lib.Linear(2, 2)

            def forward(self, x):
                for b in self.blocks:
                    x = b(x)
                x = x.mean((2, 3)) if lib is nn else x.mean(dim=(2, 3))
                return [self.heads[k](x) for k in self.heads]

        return M()


@pytest.mark.torch
def test_containers_have_torch_keys_and_traversal():
    torch = pytest.importorskip("torch")
    ours, theirs = Net.build(nn), Net.build(torch.nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [type(m).__name__ for m in ours.children()] == ["ModuleList", "ModuleDict"]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32)
    for a, b in zip(ours(tg.Tensor(x)), theirs(torch.tensor(x))):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_module_list_operations():
    ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
    ml.insert(0, nn.Sigmoid())
    ml.extend([nn.Identity()])
    ml += [nn.Linear(2, 2)]
    assert [type(m).__name__ for m in ml] == ["Sigmoid", "ReLU", "Tanh", "Identity", "Linear"]
    assert isinstance(ml[-1], nn.Linear) and len(ml[1:3]) == 2
    del ml[0]
    assert list(ml._modules) == ["0", "1", "2", "3"] and list(ml.state_dict()) == [
        "3.weight",
        "3.bias",
    ]
    ml[0] = nn.Linear(1, 1)
    assert list(ml.state_dict())[:2] == ["0.weight", "0.bias"]
    with pytest.raises(IndexError, match="ModuleList: index 9 is out of range for 4 modules"):
        ml[9]
    with pytest.raises(TypeError, match="add_module: '4' must be a Module, got int"):
        ml.append(3)
    with pytest.raises(NotImplementedError, match="ModuleList has no forward"):
        ml(1)


def test_module_dict_operations():
    md = nn.ModuleDict([("x", nn.ReLU()), ("y", nn.Linear(1, 2))])
    assert "x" in md and md.keys() == ["x", "y"] and len(md) == 2
    assert isinstance(md.pop("x"), nn.ReLU) and list(md) == ["y"]
    md.update({"z": nn.Tanh()})
    assert [k for k, _ in md.items()] == ["y", "z"]
    with pytest.raises(KeyError, match=r"ModuleDict: no module 'q'; keys are \['y', 'z'\]"):
        md["q"]
    with pytest.raises(ValueError, match="add_module: name must be a non-empty str without '.'"):
        md["a.b"] = nn.ReLU()
    md.clear()
    assert len(md) == 0 and list(md.state_dict()) == []


@pytest.mark.torch
def test_apply_visits_like_torch():
    torch = pytest.importorskip("torch")
    seen, tseen = [], []
    Net.build(nn).apply(lambda m: seen.append(type(m).__name__))
    Net.build(torch.nn).apply(lambda m: tseen.append(type(m).__name__))
    assert seen == tseen

    def init(m):
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)

    net = Net.build(nn)
    assert net.apply(init) is net
    assert all(not net.heads[k].weight.numpy().any() for k in net.heads)


def test_shared_module_listed_once_but_saved_under_both_names():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, shared)
    assert [n for n, _ in seq.named_modules()] == ["", "0"]
    assert len(list(seq.named_modules(remove_duplicate=False))) == 3
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert len(list(seq.parameters())) == 2


def test_dtype_casts_and_requires_grad():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    net(tg.randn(2, 1, 5, 5)).sum().backward()
    assert net.double() is net
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net[0].weight.grad.dtype == np.float64
    assert net[1].running_mean.dtype == np.float64
    assert net[1].num_batches_tracked.dtype == np.int64  # integer buffers stay
    assert net(tg.randn(1, 1, 5, 5, dtype=np.float64)).dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    net.to(tg.float64)
    assert net[0].weight.dtype == np.float64
    net.to("cpu", np.float32)
    assert net[0].weight.dtype == np.float32
    net.to(device="cpu")
    net.to(tg.zeros(1, dtype=np.float64))
    assert net[0].weight.dtype == np.float64
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="Sequential.to: tapegrad runs on the CPU only"):
        net.to("cuda")
    with pytest.raises(TypeError, match="Sequential.to: only floating dtypes"):
        net.to(np.int64)


# --- nn.init -------------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(16, 8), (8, 4, 3, 3), (6, 5, 7)])
def test_fans_and_gains_match_torch(shape):
    torch = pytest.importorskip("torch")
    t = torch.empty(shape)
    assert nn.init._calculate_fan_in_and_fan_out(tg.zeros(*shape)) == (
        torch.nn.init._calculate_fan_in_and_fan_out(t)
    )
    for nl, p in [("relu", None), ("tanh", None), ("leaky_relu", 0.2), ("conv2d", None)]:
        assert nn.init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))


def _std(fn, shape, **kw):
    t = tg.zeros(*shape)
    assert fn(t, **kw) is t
    return float(t.numpy().std()), t.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initialisers_have_the_documented_distributions(dtype):
    tg.manual_seed(0)
    shape = (64, 32, 3, 3)
    fan_in, fan_out = 32 * 9, 64 * 9
    checks = [
        (nn.init.xavier_uniform_, {}, math.sqrt(6 / (fan_in + fan_out)) / math.sqrt(3), True),
        (nn.init.xavier_normal_, {"gain": 2.0}, 2 * math.sqrt(2 / (fan_in + fan_out)), False),
        (nn.init.kaiming_uniform_, {"nonlinearity": "relu"}, math.sqrt(2 / fan_in), True),
        (nn.init.kaiming_normal_, {"mode": "fan_out"}, math.sqrt(2 / fan_out), False),
        (nn.init.normal_, {"std": 0.02}, 0.02, False),
    ]
    for fn, kw, want, bounded in checks:
        t = tg.Tensor(np.zeros(shape, dtype))
        fn(t, **kw)
        a = t.numpy()
        assert a.dtype == dtype
        assert a.std() == pytest.approx(want, rel=0.03), fn.__name__
        assert abs(a.mean()) < 0.05 * want
        if bounded:
            assert np.abs(a).max() <= want * math.sqrt(3) * (1 + 1e-6)
    t = tg.zeros(20000)
    nn.init.trunc_normal_(t, mean=0.5, std=1.0, a=-0.5, b=1.0)
    assert t.numpy().min() >= -0.5 and t.numpy().max() <= 1.0 and t.numpy().std() > 0.3
    for fn, val in [(nn.init.zeros_, 0), (nn.init.ones_, 1)]:
        assert (fn(tg.randn(3)).numpy() == val).all()
    assert (nn.init.constant_(tg.randn(2, 2), 0.25).numpy() == 0.25).all()


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (3, 2, 2, 2)])
def test_orthogonal(shape):
    t = nn.init.orthogonal_(tg.Tensor(np.zeros(shape)), gain=2.0)
    flat = t.numpy().reshape(shape[0], -1)
    small = min(flat.shape)
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(gram, 4 * np.eye(small), atol=1e-10)


def test_init_bad_arguments():
    with pytest.raises(ValueError, match="xavier_uniform_: fan in and fan out need a tensor"):
        nn.init.xavier_uniform_(tg.zeros(3))
    with pytest.raises(ValueError, match="kaiming_normal_: mode must be 'fan_in' or 'fan_out'"):
        nn.init.kaiming_normal_(tg.zeros(3, 3), mode="in")
    with pytest.raises(ValueError, match="calculate_gain: unsupported nonlinearity 'swish'"):
        nn.init.calculate_gain("swish")
    with pytest.raises(TypeError, match="normal_: expected a floating tensor, got int64"):
        nn.init.normal_(tg.tensor([1, 2]))
    with pytest.raises(TypeError, match="zeros_: expected a Tensor, got list"):
        nn.init.zeros_([1.0])
    with pytest.raises(ValueError, match="orthogonal_: needs at least 2 dimensions"):
        nn.init.orthogonal_(tg.zeros(3))


def test_sequential_slice_and_module_zero_grad_follow_pytorch():
    torch = pytest.importorskip("torch")
    layers = [nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)]
    m = nn.Sequential(*layers)
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    s, ts = m[1:], tm[1:]
    assert isinstance(s, nn.Sequential) and list(s.state_dict()) == list(ts.state_dict())
    assert s[0] is layers[1] and s[1] is layers[2] and len(m[:0]) == 0
    x = tg.ones(2, 3)
    m(x).sum().backward()
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
