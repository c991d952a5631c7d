"""The tape: recording, reverse replay, accumulation, freeing, no_grad, gradcheck."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import tapegrad as tg


def f64(*shape, rng, requires_grad=True):
    return tg.tensor(rng.standard_normal(shape), requires_grad=requires_grad, dtype=np.float64)


def test_backward_accumulates_into_leaves(rng):
    x = f64(3, rng=rng)
    y = (x * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 3)


def test_shared_subexpression_gets_summed_gradient(rng):
    x = f64(4, rng=rng)
    a = x * 2
    y = (a * a + a).sum()  # dy/dx = (2a + 1) * 2
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), (2 * a.numpy() + 1) * 2)


def test_broadcast_gradients_are_summed_back(rng):
    x = f64(2, 3, rng=rng)
    b = f64(3, rng=rng)
    c = f64(2, 1, rng=rng)
    ((x + b) * c).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), c.numpy().repeat(3, 1).sum(0))
    np.testing.assert_allclose(c.grad.numpy(), (x.numpy() + b.numpy()).sum(1, keepdims=True))


def test_second_backward_needs_retain_graph(rng):
    x = f64(3, rng=rng)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    x.grad = None
    z = (x.exp()).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(x.numpy()))


def test_no_grad_records_nothing_as_context_and_decorator(rng):
    x = f64(3, rng=rng)
    with tg.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf

    @tg.no_grad()
    def double(t):
        return t * 2

    z = double(x)
    assert not z.requires_grad
    assert tg.is_grad_enabled()
    assert (x * 2).requires_grad


def test_records_are_replayed_in_reverse_tape_order(rng):
    x = f64(2, rng=rng)
    a = x * 2
    b = a + 1
    c = b * a
    assert a._node.seq < b._node.seq < c._node.seq


def test_saved_buffers_freed_after_backward(rng):
    x = f64(50, rng=rng)
    y = x.exp()
    saved = y._node.ctx.saved[0]
    ref = weakref.ref(saved) if hasattr(saved, "__weakref__") else None
    del saved
    y.sum().backward()
    assert y._node.ctx.saved is None
    gc.collect()
    if ref is not None:
        assert ref() is None or ref() is y.data  # exp saves its own output


def test_graph_is_freed_when_unreferenced(rng):
    x = f64(10, rng=rng)
    y = (x * 2).exp()
    node_ref = weakref.ref(y._node)
    del y
    gc.collect()
    assert node_ref() is None


def test_backward_of_non_scalar_needs_grad(rng):
    x = f64(3, rng=rng)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    (x * 2).backward(np.ones(3))
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_gradcheck_catches_a_wrong_backward(rng):
    class BadSquare(tg.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_arrays
            return g * a  # should be 2 * g * a

    x = f64(4, rng=rng)
    with pytest.raises(tg.GradcheckError, match="relative error"):
        tg.gradcheck(BadSquare.apply, [x])


def test_gradcheck_requires_float64(rng):
    x = tg.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        tg.gradcheck(lambda t: t * 2, [x])


@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_detect_anomaly_names_the_op(rng):
    x = tg.tensor([-1.0, 1.0], requires_grad=True)
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match="Log"):
        x.log()
