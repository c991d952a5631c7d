"""Gradchecks (float64) of the elementwise, reduction, shape, matmul and softmax ops,
and their values against NumPy formulas (and PyTorch where installed)."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F


def t64(rng, *shape, positive=False):
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return tg.tensor(a, requires_grad=True, dtype=np.float64)


UNARY = {
    "neg": (lambda x: -x, False),
    "exp": (lambda x: x.exp(), False),
    "log": (lambda x: x.log(), True),
    "tanh": (lambda x: x.tanh(), False),
    "sigmoid": (lambda x: x.sigmoid(), False),
    "relu": (lambda x: F.relu(x + 0.05), False),
    "abs": (lambda x: (x + 0.05).abs(), False),
    "sqrt": (lambda x: x.sqrt(), True),
    "pow_scalar": (lambda x: x**3, False),
    "softmax": (lambda x: x.softmax(axis=1), False),
    "log_softmax": (lambda x: F.log_softmax(x, dim=0), False),
    "sum_axis": (lambda x: x.sum(axis=1, keepdims=True), False),
    "mean_all": (lambda x: x.mean(), False),
    "mean_axes": (lambda x: x.mean(axis=(0, 2)), False),
    "max_axis": (lambda x: x.max(axis=2), False),
    "var": (lambda x: x.var(axis=0), False),
    "reshape": (lambda x: x.reshape(4, 6) * 1.5, False),
    "permute": (lambda x: x.permute(2, 0, 1) * 1.5, False),
    "getitem": (lambda x: x[1:, ::2, 1] * 2, False),
    "flatten": (lambda x: x.flatten() * 2, False),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradcheck(name, rng):
    fn, positive = UNARY[name]
    assert tg.gradcheck(fn, [t64(rng, 2, 3, 4, positive=positive)])


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 1),
    "pow": lambda a, b: (a * a + 1) ** b,
    "matmul": lambda a, b: a @ b.transpose(-1, -2),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_gradcheck_with_broadcast(name, rng):
    a, b = t64(rng, 2, 3, 4), t64(rng, 3, 4)
    assert tg.gradcheck(BINARY[name], [a, b])


def test_matmul_vector_cases(rng):
    m, v = t64(rng, 3, 4), t64(rng, 4)
    assert tg.gradcheck(lambda m, v: m @ v, [m, v])
    assert tg.gradcheck(lambda m, v: v @ m.T, [m, v])


def test_linear_gradcheck_and_value(rng):
    x, w, b = t64(rng, 5, 4), t64(rng, 3, 4), t64(rng, 3)
    assert tg.gradcheck(F.linear, [x, w, b])
    np.testing.assert_allclose(
        F.linear(x, w, b).numpy(), x.numpy() @ w.numpy().T + b.numpy(), rtol=1e-12
    )


def test_linear_bad_shapes():
    with pytest.raises(ValueError, match=r"linear: input's last dimension.*\(2, 5\).*\(3, 4\)"):
        F.linear(tg.randn(2, 5), tg.randn(3, 4))
    with pytest.raises(TypeError, match="linear: input must be float32 or float64"):
        F.linear(tg.tensor([[1, 2]]), tg.randn(3, 2))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(smoothing, reduction, rng):
    x = t64(rng, 5, 4)
    target = np.array([0, 3, 1, -100, 2])
    fn = lambda x: F.cross_entropy(  # noqa: E731
        x, target, reduction=reduction, label_smoothing=smoothing
    )
    assert tg.gradcheck(fn, [x])


def test_cross_entropy_matches_formula_and_is_stable(rng):
    x = rng.standard_normal((6, 5)) * 1e4
    t = rng.integers(0, 5, 6)
    loss = F.cross_entropy(tg.tensor(x), t).item()
    shifted = x - x.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, -logp[np.arange(6), t].mean(), rtol=1e-6)


def test_cross_entropy_bad_target():
    with pytest.raises(ValueError, match=r"cross_entropy: target values must lie in \[0, 2\]"):
        F.cross_entropy(tg.randn(2, 3), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"cross_entropy: target must have shape \(2,\)"):
        F.cross_entropy(tg.randn(2, 3), np.array([0, 1, 2]))


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((4, 6))
    t = rng.integers(0, 6, 4)
    x = tg.tensor(a, requires_grad=True, dtype=np.float64)
    loss = F.cross_entropy(x.tanh() * 3, t, label_smoothing=0.1)
    loss.backward()
    xt = torch.tensor(a, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(torch.tanh(xt) * 3, torch.tensor(t), label_smoothing=0.1)
    lt.backward()
    np.testing.assert_allclose(loss.item(), lt.item(), rtol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_tails_and_scalars_match_torch(dtype):
    torch = pytest.importorskip("torch")
    x = np.array(
        [-1e4, -100, -88, -30, -1e-8, -0.0, 0, 1e-8, 0.5, 30, 100, np.inf, -np.inf, np.nan]
    )
    x = x.astype(dtype)
    got = tg.Tensor(x).sigmoid().data
    want = torch.sigmoid(torch.from_numpy(x)).numpy()
    assert got.dtype == dtype
    # PyTorch flushes subnormal results to zero: allow differences below the smallest normal
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)
    scalar = tg.Tensor(np.array(-30.0, dtype)).sigmoid().data
    assert scalar.shape == () and np.isclose(scalar, want[3], rtol=4 * np.finfo(dtype).eps)
