"""Pooling ops: gradcheck, the PyTorch oracle, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tapegrad.kernels as K

import tapegrad as tg
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
