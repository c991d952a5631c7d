"""The pointwise activations (F.leaky_relu, elu, gelu, silu, hardswish, hardsigmoid, softplus,
mish), PReLU and the Softmax/LogSoftmax layers: gradcheck in float64, PyTorch as the oracle
for outputs and gradients in float32 and float64 (NaN and infinities included), layers and
bad arguments."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn as nn
import tapegrad.nn.functional as F

# (functional name, kwargs, layer factory)
CASES = [
    ("leaky_relu", {}, lambda: nn.LeakyReLU()),
    ("leaky_relu", {"negative_slope": 0.2}, lambda: nn.LeakyReLU(0.2)),
    ("elu", {}, lambda: nn.ELU()),
    ("elu", {"alpha": 0.7}, lambda: nn.ELU(alpha=0.7)),
    ("gelu", {}, lambda: nn.GELU()),
    ("gelu", {"approximate": "tanh"}, lambda: nn.GELU(approximate="tanh")),
    ("silu", {}, lambda: nn.SiLU()),
    ("hardswish", {}, lambda: nn.Hardswish()),
    ("hardsigmoid", {}, lambda: nn.Hardsigmoid()),
    ("softplus", {}, lambda: nn.Softplus()),
    ("softplus", {"beta": 2.0, "threshold": 4.0}, lambda: nn.Softplus(2.0, 4.0)),
    ("mish", {}, lambda: nn.Mish()),
]
IDS = [f"{n}{''.join(f'-{v}' for v in kw.values())}" for n, kw, _ in CASES]
OPS = sorted({n for n, _, _ in CASES})
SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -3.0, 3.0, -2.5, 2.5, 1e-40, 50.0, -50.0])


def _x(dtype, seed=0, shape=(3, 4, 5)):
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal(shape)
    # off the kinks, where a finite difference would straddle two pieces
    for k in (0.0, -3.0, 3.0, 2.0):
        x[np.abs(x - k) < 0.02] += 0.05
    return x.astype(dtype)


@pytest.mark.parametrize("name,kw,_layer", CASES, ids=IDS)
def test_gradcheck_float64_every_variant(name, kw, _layer):
    x = _x(np.float64, shape=(2, 3, 4))
    for v in K.variants(name):
        with K.use(**{name: v}):
            t = tg.tensor(x, requires_grad=True)
            assert tg.gradcheck(lambda a: getattr(F, name)(a, **kw), [t]), (name, v)


def _torch_pair(torch, name, kw, x, g):
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = getattr(torch.nn.functional, name)(tx, **kw)
    ty.backward(torch.from_numpy(g))
    return ty.detach().numpy(), tx.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw,layer", CASES, ids=IDS)
def test_matches_torch_forward_and_gradient(name, kw, layer, dtype):
    torch = pytest.importorskip("torch")
    # the specials first: PyTorch's vectorised path (every full vector) is the reference; its
    # scalar tail differs from it for a few NaN cases
    x = np.concatenate([SPECIAL.astype(dtype), _x(dtype, 1).reshape(-1)]).reshape(2, 3, -1)
    g = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    g.reshape(-1)[:4] = [np.inf, np.nan, 1.0, -np.inf]
    want_y, want_g = _torch_pair(torch, name, kw, x, g)
    if name == "gelu" and kw == {} and dtype == np.float32:
        # PyTorch's float32 vectorised erf gives NaN at +inf (its float64 path: +inf, as ours)
        want_y = np.where(np.isposinf(x), np.inf, want_y)
    tol = dict(rtol=1e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    if name == "hardsigmoid" and dtype == np.float64:
        tol["rtol"] = 1e-7  # PyTorch's float64 backward multiplies by float32's 1/6
    for v in K.variants(name):
        with K.use(**{name: v}):
            for f in (lambda t: getattr(F, name)(t, **kw), layer()):
                t = tg.tensor(x, requires_grad=True)
                y = f(t)
                y.backward(g)
                for got, want, what in ((y.numpy(), want_y, "y"), (t.grad.numpy(), want_g, "g")):
                    msg = f"{v} {what}"
                    assert got.dtype == dtype
                    # NaN where PyTorch's NaN; infinities (with their signs) where its are
                    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), msg)
                    np.testing.assert_array_equal(np.isinf(got), np.isinf(want), msg)
                    np.testing.assert_allclose(got, want, equal_nan=True, err_msg=msg, **tol)


def test_nan_and_inf_without_torch():
    """The explicit cases (hold without torch): NaN in, NaN out for every activation; the
    saturating ones map -inf to their limit; the gradient of a NaN input is NaN."""
    x = np.array([np.nan, -np.inf, np.inf, -0.0])
    y = {n: getattr(F, n)(x).numpy() for n in OPS}
    for n in OPS:
        assert np.isnan(y[n][0]), n
    np.testing.assert_array_equal(y["elu"][1:], [-1.0, np.inf, -0.0])
    np.testing.assert_array_equal(y["hardsigmoid"][1:], [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(y["softplus"][1:3], [0.0, np.inf])
    np.testing.assert_array_equal(y["leaky_relu"][1:], [-np.inf, np.inf, -0.0])
    assert np.signbit(y["leaky_relu"][3])  # -0.0 keeps its sign, as PyTorch's
    t = tg.tensor(np.array([np.nan, 1.0]), requires_grad=True)
    F.silu(t).sum().backward()
    assert np.isnan(t.grad.numpy()[0]) and np.isfinite(t.grad.numpy()[1])


def test_float32_stays_float32_and_non_contiguous_input():
    x = _x(np.float32, 3, (6, 8))
    t = tg.Tensor(x, requires_grad=True)
    y = F.gelu(t.T)  # an F-ordered view goes through one contiguous copy
    y.backward(np.ones((8, 6), np.float32))
    assert y.dtype == np.float32 and t.grad.dtype == np.float32
    ref = K.get("gelu", "reference")
    np.testing.assert_allclose(y.numpy(), ref.pointwise_forward(2, x.T.copy(), 0, 0), rtol=1e-6)


def test_bad_arguments_name_function_and_argument():
    x = tg.tensor(np.zeros((2, 3), np.float32))
    bad = [
        (lambda: F.leaky_relu(x, "0.1"), TypeError, r"^leaky_relu: negative_slope"),
        (lambda: F.leaky_relu(x, inplace=1), TypeError, r"^leaky_relu: inplace must be a bool"),
        (lambda: F.elu(x, alpha=None), TypeError, r"^elu: alpha must be a real number"),
        (lambda: F.gelu(x, approximate="exact"), ValueError, r"^gelu: approximate must be"),
        (lambda: F.gelu(x, approximate=None), TypeError, r"^gelu: approximate must be a str"),
        (lambda: F.softplus(x, beta="2"), TypeError, r"^softplus: beta"),
        (lambda: F.softplus(x, threshold=[1]), TypeError, r"^softplus: threshold"),
        (lambda: F.silu([1.0, 2.0]), TypeError, r"^silu: input must be a Tensor"),
        (lambda: F.mish(tg.tensor([1, 2])), TypeError, r"^mish: input must be float32"),
        (lambda: nn.GELU("fast"), ValueError, r"^gelu: approximate must be 'none' or 'tanh'"),
        (lambda: nn.LeakyReLU("a"), TypeError, r"^leaky_relu: negative_slope"),
        (lambda: nn.Softplus(beta=None), TypeError, r"^softplus: beta"),
        (lambda: nn.SiLU(inplace="yes"), TypeError, r"^silu: inplace"),
        (lambda: nn.PReLU(0), ValueError, r"^PReLU: num_parameters must be positive"),
        (lambda: nn.PReLU(2.5), TypeError, r"^PReLU: num_parameters must be an int"),
        (lambda: nn.PReLU(init="x"), TypeError, r"^PReLU: init"),
        (lambda: nn.PReLU(4)(x), ValueError, r"^prelu: weight has 4 elements .* \(2, 3\)"),
        (lambda: F.prelu(x, np.ones((1, 3), np.float32)), ValueError, r"^prelu: weight must"),
        (lambda: F.prelu(x, np.ones(3)), TypeError, r"^prelu: arguments must share one dtype"),
        (lambda: nn.Softmax(dim="1"), TypeError, r"^Softmax: dim"),
        (lambda: nn.LogSoftmax(dim=1.0), TypeError, r"^LogSoftmax: dim"),
        (lambda: nn.Softmax(dim=2)(x), ValueError, r"^softmax: dim 2 is out of range"),
    ]
    for call, exc, pattern in bad:
        with pytest.raises(exc, match=pattern):
            call()


def test_function_apply_directly_is_validated_too():
    from tapegrad.ops import activation

    with pytest.raises(ValueError, match=r"^gelu: approximate"):
        activation.GELU.apply(tg.tensor(np.zeros(2)), approximate="erf")
    with pytest.raises(TypeError, match=r"^elu: input must be float32"):
        activation.ELU.apply(tg.tensor(np.zeros(2, np.int32)))


def test_inplace_is_accepted_and_leaves_the_input():
    x = np.array([-1.0, 2.0])
    t = tg.tensor(x.copy())
    for f in (F.leaky_relu, F.elu, F.silu, F.hardswish, F.hardsigmoid, F.mish):
        f(t, inplace=True)
        np.testing.assert_array_equal(t.numpy(), x)
    assert nn.LeakyReLU(inplace=True).inplace is True


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num", [1, 3])
def test_prelu_matches_torch(num, dtype):
    torch = pytest.importorskip("torch")
    x = _x(dtype, 4, (2, 3, 5))
    x.reshape(-1)[:3] = [np.nan, -np.inf, np.inf]
    g = np.random.default_rng(5).standard_normal(x.shape).astype(dtype)
    m = nn.PReLU(num, init=0.3, dtype=dtype)
    t = tg.tensor(x, requires_grad=True)
    y = m(t)
    y.backward(g)
    tm = torch.nn.PReLU(num).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        tm.weight.fill_(0.3)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = tm(tx)
    ty.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), equal_nan=True, **tol)
    np.testing.assert_allclose(t.grad.numpy(), tx.grad.numpy(), equal_nan=True, **tol)
    np.testing.assert_allclose(m.weight.grad.numpy(), tm.weight.grad.numpy(), equal_nan=True, **tol)
    assert m.weight.grad.dtype == dtype and m.weight.grad.shape == (num,)
    assert [n for n, _ in m.named_parameters()] == ["weight"]


def test_prelu_gradcheck_and_ranks():
    x = _x(np.float64, 6, (2, 3, 4))
    w = tg.tensor(np.array([0.1, -0.4, 0.7]), requires_grad=True)
    assert tg.gradcheck(F.prelu, [tg.tensor(x, requires_grad=True), w])
    one = nn.PReLU(dtype=np.float64)
    assert one(tg.tensor(np.array([-2.0, 3.0]))).numpy().tolist() == [-0.5, 3.0]
    assert one(tg.tensor(np.array(-4.0))).numpy() == -1.0


@pytest.mark.torch
def test_softmax_layers_match_torch():
    torch = pytest.importorskip("torch")
    x = _x(np.float64, 7, (2, 3, 4))
    for ours, theirs in (
        (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1)),
    ):
        t = tg.tensor(x, requires_grad=True)
        y = ours(t)
        y.backward(np.cos(x))
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        ty = theirs(tx)
        ty.backward(torch.from_numpy(np.cos(x)))
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(t.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"


def test_softmax_layer_without_dim_uses_pytorchs_implicit_choice():
    x = tg.tensor(_x(np.float64, 8, (2, 3)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = nn.Softmax()(x).numpy()
    assert any("implicit dimension" in str(w.message) for w in caught)
    np.testing.assert_allclose(y.sum(axis=1), 1.0)  # 2-D: dimension 1, as PyTorch


def test_layers_repr_and_sequential():
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')"
    assert repr(nn.Softplus(2, 5)) == "Softplus(beta=2.0, threshold=5.0)"
    model = nn.Sequential(nn.Linear(4, 3), nn.SiLU(), nn.Linear(3, 2), nn.Hardswish())
    x = tg.tensor(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    y = model(x)
    y.sum().backward()
    assert y.shape == (5, 2) and all(p.grad is not None for p in model.parameters())
