"""A backward that adds the gradient the tape already holds for its input
(``autograd.pending_grad`` and ``Summed``): batch norm's kernels add a residual block's
skip gradient as they write the input gradient, and a 1x1 convolution read by a second
convolution adds its input gradient into the other's. Each case is checked against the
same graph with the tape summing the two gradients itself (``_pending`` switched off)
and, through the variants, against ``reference``; a kernel that ignored the pending
gradient would drop one of the two terms."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
from tapegrad import autograd
from tapegrad.autograd import Context, Fresh, Function, Summed, pending_grad


def _grads(fn, arrays, fused: bool):
    """Gradients of sum(fn(*tensors) * weights) for each array, with or without the
    tape offering pending gradients."""
    ts = [tg.Tensor(a.copy(), requires_grad=True) for a in arrays]
    orig = autograd._pending
    if not fused:
        autograd._pending = lambda *a: None
    try:
        out = fn(*ts)
        rng = np.random.default_rng(1)
        out.backward(rng.standard_normal(out.shape).astype(out.dtype))
    finally:
        autograd._pending = orig
    return [t.grad_data.copy() for t in ts]


def _assert_matches(got, sep, ref, dtype, ref_slack):
    """Each gradient as the tape's own sum gives it (rounding apart) and as ``reference``
    does (within ``ref_slack`` times that)."""
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for g, s, r in zip(got, sep, ref):
        np.testing.assert_allclose(g, s, rtol=tol, atol=tol)
        np.testing.assert_allclose(g, r, rtol=ref_slack * tol, atol=ref_slack * tol)


class _Twice(Function):
    """y = 2x; the backward adds the pending gradient (writable or not) into its own."""

    calls: list = []

    @staticmethod
    def forward(ctx: Context, x, writable=False):
        ctx.writable = writable
        return 2 * x

    @staticmethod
    def backward(ctx: Context, g):
        acc = pending_grad(ctx, 0, writable=ctx.writable)
        _Twice.calls.append(acc is not None)
        if acc is None:
            return Fresh(2 * g)
        if ctx.writable:
            acc += 2 * g
            return Summed(acc)
        return Summed(acc + 2 * g)


@pytest.mark.parametrize("writable", [False, True])
def test_a_backward_that_adds_the_pending_gradient_gives_the_tape_s_sum(writable):
    """h read by _Twice and, recorded after it (so its backward runs first), by exp
    (an unmarked gradient: read only) or by a second _Twice (a Fresh one: writable)."""
    x = np.arange(6.0).reshape(2, 3) / 10

    def fn(t):
        h = t * 3
        twice = _Twice.apply(h, writable=writable)
        return (_Twice.apply(h) if writable else h.exp()) + twice

    _Twice.calls.clear()
    got = _grads(fn, [x], fused=True)[0]
    assert _Twice.calls[-1] is True  # the first reader's gradient was pending
    want = _grads(fn, [x], fused=False)[0]
    np.testing.assert_array_equal(got, want)
    u = np.random.default_rng(1).standard_normal(x.shape)  # _grads' upstream gradient
    other = 6 if writable else 3 * np.exp(3 * x)
    np.testing.assert_allclose(got, u * (other + 6), rtol=1e-14)


def test_pending_is_only_writable_when_the_tape_owns_it():
    # Add passes its incoming gradient on unchanged: not the tape's to write into
    _Twice.calls.clear()
    seen = []

    class _Look(Function):
        @staticmethod
        def forward(ctx: Context, x):
            return x.copy()

        @staticmethod
        def backward(ctx: Context, g):
            seen.append((pending_grad(ctx, 0), pending_grad(ctx, 0, writable=True)))
            return g

    x = tg.Tensor(np.ones(4), requires_grad=True)
    h = x * 2
    (h + _Look.apply(h)).backward(np.ones(4))
    ((read, write),) = seen
    assert read is not None and write is None


def test_no_stale_pending_gradient_after_a_retained_backward():
    x = tg.Tensor(np.linspace(-1, 1, 5), requires_grad=True)
    h = x * 3
    twice = _Twice.apply(h)
    y = (h.exp() + twice).sum()
    y.backward(retain_graph=True)
    (g,) = tg.autograd.grad(y, [x])
    np.testing.assert_allclose(g.numpy(), 3 * np.exp(3 * x.numpy()) + 6, rtol=1e-14)
    np.testing.assert_allclose(x.grad_data, g.numpy(), rtol=1e-14)


@pytest.mark.parametrize("variant", ["reference", "fused-numba", "fused-cython"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_adds_a_residual_skip_gradient(variant, dtype, relu):
    """x feeds both a batch norm and the skip of a residual sum (resnet8's blocks)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 6, 7)).astype(dtype)
    w = (rng.random(5) + 0.5).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    norm = F.batch_norm_relu if relu else F.batch_norm

    def fn(t, wt, bt):
        h = t * 1.5  # not a leaf: leaves take their gradients straight into .grad
        return norm(h, None, None, wt, bt, training=True) * 2 + h * h  # the skip after

    with K.use(batch_norm=variant):
        got = _grads(fn, [x, w, b], fused=True)
        sep = _grads(fn, [x, w, b], fused=False)
    with K.use(batch_norm="reference"):
        ref = _grads(fn, [x, w, b], fused=False)
    _assert_matches(got, sep, ref, dtype, ref_slack=50)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("first", ["pointwise", "other"])
def test_a_1x1_convolution_adds_into_the_other_reader_s_gradient(stride, dtype, first):
    """x read by a 1x1 convolution (pointwise-cython) and a 3x3 one, summed after (the
    shortcut and the first conv of resnet8's downsampling blocks); ``first`` says whose
    backward runs first, so the 1x1 call either adds into the other's fresh gradient or
    finds none pending."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 9, 11)).astype(dtype)
    w1 = rng.standard_normal((4, 5, 1, 1)).astype(dtype)
    w3 = rng.standard_normal((4, 5, 3, 3)).astype(dtype)

    def fn(t, a, c):
        h = t * 1.5  # not a leaf: leaves take their gradients straight into .grad
        if first == "other":  # recorded last, so its backward runs first
            one = F.conv2d(h, a, stride=stride)
            three = F.conv2d(h, c, stride=stride, padding=1)
        else:
            three = F.conv2d(h, c, stride=stride, padding=1)
            one = F.conv2d(h, a, stride=stride)
        return one + three

    def run(fused):
        with K.use(conv2d="pointwise-cython"):  # the 3x3 call falls back to im2col-cython
            return _grads(fn, [x, w1, w3], fused)

    got, sep = run(True), run(False)
    with K.use(conv2d="reference"):
        ref = _grads(fn, [x, w1, w3], fused=False)
    _assert_matches(got, sep, ref, dtype, ref_slack=20)
