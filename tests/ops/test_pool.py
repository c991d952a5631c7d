"""Pooling ops: gradcheck, the PyTorch oracle, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

MAX_VARIANTS = K.variants("max_pool2d")


def _distinct(*shape, seed=0):
    rng = np.random.default_rng(seed)
    # well-separated distinct values so finite differences never cross an argmax tie
    return rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64) * 0.1


def test_max_pool2d_small_example():
    x = tg.Tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
    y = F.max_pool2d(x, 2)
    np.testing.assert_array_equal(y.data[0, 0], [[5, 7], [13, 15]])
    y.sum().backward()
    want = np.zeros((4, 4))
    want[1::2, 1::2] = 1
    np.testing.assert_array_equal(x.grad.data[0, 0], want)


@pytest.mark.parametrize("variant", MAX_VARIANTS)
@pytest.mark.parametrize(
    "args", [(2, None, 0, 1, False), ((3, 2), (2, 1), (1, 1), 1, True), (3, 2, 1, 2, True)]
)
def test_max_pool2d_gradcheck(variant, args):
    x = tg.Tensor(_distinct(2, 2, 7, 6), requires_grad=True)
    with K.use(max_pool2d=variant):
        assert tg.gradcheck(lambda x: F.max_pool2d(x, *args), [x])


@pytest.mark.torch
@pytest.mark.parametrize("variant", MAX_VARIANTS)
@pytest.mark.parametrize(
    "shape, args",
    [
        ((2, 3, 8, 8), (2, None, 0, 1, False)),
        ((2, 3, 7, 9), (3, 2, 1, 1, True)),
        ((1, 2, 10, 7), ((3, 2), (2, 3), (1, 0), (2, 1), True)),
        ((1, 2, 5, 5), (2, 2, 0, 1, True)),
        ((2, 1, 6, 6), (4, 3, 2, 1, False)),
    ],
)
def test_max_pool2d_matches_torch(variant, shape, args):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, *args)
    gy = np.random.default_rng(1).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    gx = tg.Tensor(x, requires_grad=True)
    with K.use(max_pool2d=variant):
        y = F.max_pool2d(gx, *args)
    y.backward(gy)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy())
    np.testing.assert_allclose(gx.grad.data, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "shape, args, exc, words",
    [
        ((3, 5, 5), (2,), ValueError, ["max_pool2d", "input", "4-D"]),
        ((1, 1, 5, 5), (0,), ValueError, ["max_pool2d", "kernel_size"]),
        ((1, 1, 5, 5), (2, 0), ValueError, ["max_pool2d", "stride"]),
        ((1, 1, 5, 5), (2, 2, 2), ValueError, ["max_pool2d", "padding", "half"]),
        ((1, 1, 2, 2), (3,), ValueError, ["max_pool2d", "output size"]),
    ],
)
def test_max_pool2d_bad_input(shape, args, exc, words):
    with pytest.raises(exc) as info:
        F.max_pool2d(tg.Tensor(np.zeros(shape)), *args)
    for w in words:
        assert w in str(info.value)


def test_max_pool2d_int_dtype():
    with pytest.raises(TypeError, match="max_pool2d"):
        F.max_pool2d(tg.Tensor(np.zeros((1, 1, 4, 4), dtype=np.int32)), 2)


# --- average pooling ----------------------------------------------------------------------

AVG_VARIANTS = K.variants("avg_pool2d")
ADAPTIVE_VARIANTS = K.variants("adaptive_avg_pool2d")


@pytest.mark.parametrize("variant", AVG_VARIANTS)
@pytest.mark.parametrize("args", [(2,), ((3, 2), (2, 1), (1, 1), True, False), (3, 2, 1, True)])
def test_avg_pool2d_gradcheck(variant, args):
    x = tg.Tensor(np.random.default_rng(0).standard_normal((2, 2, 7, 6)), requires_grad=True)
    with K.use(avg_pool2d=variant):
        assert tg.gradcheck(lambda x: F.avg_pool2d(x, *args), [x])


@pytest.mark.parametrize("variant", ADAPTIVE_VARIANTS)
@pytest.mark.parametrize("size", [1, (3, 4), (None, 2)])
def test_adaptive_avg_pool2d_gradcheck(variant, size):
    x = tg.Tensor(np.random.default_rng(0).standard_normal((2, 2, 7, 5)), requires_grad=True)
    with K.use(adaptive_avg_pool2d=variant):
        assert tg.gradcheck(lambda x: F.adaptive_avg_pool2d(x, size), [x])


def _torch_pool(torch, name, x, args, variant_kw):
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn.functional, name)(tx, *args)
    gy = np.random.default_rng(1).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    gx = tg.Tensor(x, requires_grad=True)
    with K.use(**variant_kw):
        y = getattr(F, name)(gx, *args)
        y.backward(gy)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx.grad.data, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("variant", AVG_VARIANTS)
@pytest.mark.parametrize(
    "shape, args",
    [
        ((2, 3, 8, 8), (2,)),
        ((2, 3, 7, 9), (3, 2, 1, True, True)),
        ((2, 3, 7, 9), (3, 2, 1, True, False)),
        ((1, 2, 10, 7), ((3, 2), (2, 3), (1, 0), False, False)),
        ((1, 2, 5, 5), (2, 2, 0, True)),
        ((2, 1, 6, 6), (4, 3, 2, False, True)),
    ],
)
def test_avg_pool2d_matches_torch(variant, shape, args):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal(shape)
    _torch_pool(torch, "avg_pool2d", x, args, {"avg_pool2d": variant})


@pytest.mark.torch
@pytest.mark.parametrize("variant", ADAPTIVE_VARIANTS)
@pytest.mark.parametrize(
    "shape, size", [((2, 3, 8, 8), 1), ((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 4), (7, 6))]
)
def test_adaptive_avg_pool2d_matches_torch(variant, shape, size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal(shape)
    _torch_pool(torch, "adaptive_avg_pool2d", x, (size,), {"adaptive_avg_pool2d": variant})


@pytest.mark.parametrize(
    "shape, args, words",
    [
        ((3, 5, 5), (2,), ["avg_pool2d", "input", "4-D"]),
        ((1, 1, 5, 5), (0,), ["avg_pool2d", "kernel_size"]),
        ((1, 1, 5, 5), (2, 2, 2), ["avg_pool2d", "padding", "half"]),
        ((1, 1, 2, 2), (3,), ["avg_pool2d", "output size"]),
    ],
)
def test_avg_pool2d_bad_input(shape, args, words):
    with pytest.raises(ValueError) as info:
        F.avg_pool2d(tg.Tensor(np.zeros(shape)), *args)
    for w in words:
        assert w in str(info.value)


def test_adaptive_avg_pool2d_bad_input():
    x = tg.Tensor(np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="adaptive_avg_pool2d.*output_size"):
        F.adaptive_avg_pool2d(x, 0)
    with pytest.raises(TypeError, match="adaptive_avg_pool2d.*output_size"):
        F.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(ValueError, match="adaptive_avg_pool2d.*input.*4-D"):
        F.adaptive_avg_pool2d(tg.Tensor(np.zeros((2, 4, 4))), 1)
    with pytest.raises(TypeError, match="adaptive_avg_pool2d"):
        F.adaptive_avg_pool2d(tg.Tensor(np.zeros((1, 1, 4, 4), dtype=np.int64)), 1)


def test_pooling_layers():
    x = tg.Tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    np.testing.assert_allclose(
        tg.nn.AvgPool2d(2)(x).data, x.data.reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5))
    )
    np.testing.assert_allclose(
        tg.nn.AdaptiveAvgPool2d(1)(x).data[:, :, 0, 0], x.data.mean(axis=(2, 3))
    )
    assert tg.nn.AvgPool2d(3, 2, 1, ceil_mode=True)(x).shape == (2, 3, 5, 5)
    assert tg.nn.MaxPool2d(2)(x).shape == (2, 3, 4, 4)
