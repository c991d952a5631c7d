"""Gradient ownership: a leaf keeps a backward's gradient without a copy only when the
backward says it made it (``Fresh``); everything else is copied, so no leaf gradient
aliases an array someone else holds. Optimisers and data-parallel code use
``Tensor.grad_data``."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import autograd
from tapegrad.autograd import Context, Fresh, Function


class _Give(Function):
    """y = x; the backward returns ``ctx.out`` (marked fresh or not) as x's gradient."""

    @staticmethod
    def forward(ctx: Context, x, out=None, mark=False):
        ctx.out, ctx.mark = out, mark
        return x.copy()

    @staticmethod
    def backward(ctx: Context, g):
        return Fresh(ctx.out) if ctx.mark else ctx.out


def test_a_fresh_gradient_is_kept_without_a_copy():
    x = tg.Tensor(np.zeros(3), requires_grad=True)
    made = np.arange(3.0)
    _Give.apply(x, out=made, mark=True).backward(np.ones(3))
    assert x.grad_data is made


def test_an_unmarked_gradient_is_copied():
    x = tg.Tensor(np.zeros(3), requires_grad=True)
    held = np.arange(3.0)
    _Give.apply(x, out=held, mark=False).backward(np.ones(3))
    assert x.grad_data is not held and not np.shares_memory(x.grad_data, held)
    np.testing.assert_array_equal(x.grad_data, held)


def test_the_incoming_gradient_is_never_a_leaf_gradient():
    x = tg.Tensor(np.zeros((2, 3), dtype=np.float32), requires_grad=True)
    gy = np.ones((2, 3), dtype=np.float32)
    (x + 1).backward(gy)  # Add passes g through to its input
    gy[...] = 5
    np.testing.assert_array_equal(x.grad_data, np.ones((2, 3), dtype=np.float32))


def test_one_array_for_two_inputs_is_not_shared():
    a = tg.Tensor(np.zeros(4), requires_grad=True)
    b = tg.Tensor(np.zeros(4), requires_grad=True)
    (a + b).backward(np.ones(4))  # Add returns the same g for both
    assert not np.shares_memory(a.grad_data, b.grad_data)
    a.grad_data += 1  # an optimiser's in-place update of one leaves the other alone
    np.testing.assert_array_equal(b.grad_data, np.ones(4))


def test_conv_and_linear_parameter_gradients_are_exact_and_owned():
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal((2, 3, 6, 6)))
    w = tg.Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(4), requires_grad=True)
    y = F.conv2d(x, w, b, padding=1)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    np.testing.assert_allclose(b.grad_data, gy.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert b.grad_data.flags.writeable and w.grad_data.flags.writeable
    assert not np.shares_memory(b.grad_data, gy)


def test_accumulation_adds_and_keeps_earlier_arrays_intact():
    x = tg.Tensor(np.zeros(3), requires_grad=True)
    first = np.arange(3.0)
    _Give.apply(x, out=first, mark=True).backward(np.ones(3))
    _Give.apply(x, out=np.ones(3), mark=True).backward(np.ones(3))
    np.testing.assert_array_equal(x.grad_data, np.arange(3.0) + 1)
    np.testing.assert_array_equal(first, np.arange(3.0))  # not updated in place


def test_no_reference_count_calibration():
    assert "getrefcount" not in inspect.getsource(autograd)


def test_grad_data_accessor_checks_what_it_stores():
    p = tg.Tensor(np.zeros((2, 2), dtype=np.float32), requires_grad=True)
    g = np.ones((2, 2), dtype=np.float32)
    p.grad_data = g
    assert p.grad_data is g and p.grad.shape == (2, 2)
    with pytest.raises(ValueError, match=r"grad_data: expected shape \(2, 2\), got \(4,\)"):
        p.grad_data = np.ones(4, dtype=np.float32)
    with pytest.raises(TypeError, match="grad_data: expected an ndarray of dtype float32"):
        p.grad_data = np.ones((2, 2))
    with pytest.raises(TypeError, match="got list"):
        p.grad_data = [[1.0, 1.0], [1.0, 1.0]]
    p.grad_data = None
    assert p.grad is None


@pytest.mark.parametrize("fresh_first", [True, False])
def test_a_tensor_used_twice_sums_into_the_fresh_gradient_only(fresh_first):
    """Two gradients of one (non-leaf) tensor: the tape adds in place only into the one a
    backward marked fresh, never into the incoming gradient or an array a backward holds,
    and the sum is NumPy's ``a + b`` bit for bit."""
    rng = np.random.default_rng(4)
    x = tg.Tensor(rng.standard_normal((3, 5)).astype(np.float32), requires_grad=True)
    made = rng.standard_normal((3, 5)).astype(np.float32)
    held = rng.standard_normal((3, 5)).astype(np.float32)
    made0, held0 = made.copy(), held.copy()
    h = x * 1.0  # a non-leaf: its two gradients meet in the tape's pending sums
    fresh = _Give.apply(h, out=made, mark=True)
    kept = _Give.apply(h, out=held, mark=False)
    y = fresh + kept if fresh_first else kept + fresh
    gy = np.ones((3, 5), dtype=np.float32)
    y.backward(gy)
    np.testing.assert_array_equal(held, held0)
    np.testing.assert_array_equal(gy, np.ones((3, 5), dtype=np.float32))
    np.testing.assert_array_equal(x.grad_data, made0 + held0)


def test_residual_gradients_sum_without_touching_the_incoming_gradient():
    """y = conv(x) + x for a non-leaf x: the input gradient (fresh from the conv kernels)
    takes the pass-through gradient in place; the caller's gradient stays as it was and
    the result matches the sum of the two branches."""
    rng = np.random.default_rng(6)
    a = tg.Tensor(rng.standard_normal((2, 4, 6, 6)).astype(np.float32), requires_grad=True)
    w = tg.Tensor((rng.standard_normal((4, 4, 3, 3)) * 0.2).astype(np.float32))
    gy = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    gy0 = gy.copy()
    x = a * 1.0
    (F.conv2d(x, w, padding=1) + x).backward(gy)
    np.testing.assert_array_equal(gy, gy0)
    a2 = tg.Tensor(a.numpy().copy(), requires_grad=True)
    F.conv2d(a2, w, padding=1).backward(gy)
    np.testing.assert_allclose(a.grad_data, a2.grad_data.astype(np.float32) + gy0, rtol=1e-6)
