"""Strategies and comparisons shared by the conv2d kernel test files: random conv2d calls
(hypothesis), a variant module's forward and gradients against ``reference`` (hypothesis
tolerances, or tight ones for the calls a variant delegates), float64 gradcheck through
``F.conv2d``, its autograd results against PyTorch, and NaN/inf placement."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F


def conv_arrays(n, c, o, h, w, kh, kw, bias, dtype, groups=1, seed=0):
    """x (n, c, h, w), weight (o, c // groups, kh, kw) and a bias (o,) or None, standard
    normal in ``dtype``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    return x, wt, b


_CHANNELS, _OUTPUTS = st.integers(1, 11), st.integers(1, 19)
_KERNELS, _STRIDE_1 = st.tuples(st.integers(1, 5), st.integers(1, 5)), st.just(1)


@st.composite
def conv_case(
    draw,
    channels=_CHANNELS,
    outputs=_OUTPUTS,
    kernels=_KERNELS,
    strides=_STRIDE_1,
    max_h=21,
    max_w=21,
):
    """A conv2d call ``(n, c, o, h, w, kh, kw, padding, stride, bias, dtype)``: batch 1..3,
    ``c``, ``o``, ``(kh, kw)`` and the stride (both sides) drawn from the strategies given,
    padding 0..2 per side, odd and even sizes up to ``max_h`` x ``max_w`` that leave at least
    one output, with or without bias, float32 or float64."""
    n = draw(st.integers(1, 3))
    c, o = draw(channels), draw(outputs)
    kh, kw = draw(kernels)
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    s = draw(strides)
    h = draw(st.integers(max(1, kh - 2 * padding[0]), max_h))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), max_w))
    bias = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return n, c, o, h, w, kh, kw, padding, (s, s), bias, dtype


def case_arrays(case, seed=0):
    """x, weight and bias (or None) for a ``conv_case`` call, as ``conv_arrays`` draws them."""
    n, c, o, h, w, kh, kw, _, _, bias, dtype = case
    return conv_arrays(n, c, o, h, w, kh, kw, bias, dtype, seed=seed)


def tol(dtype):
    """assert_allclose's tolerances for a kernel against ``reference`` in ``dtype``."""
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


@contextmanager
def patched(mod, team: int | None = None, **attrs) -> Iterator[None]:
    """``mod``'s attributes set to ``attrs`` (and its ``_team_size`` to ``team`` threads
    whatever the call, if given) inside the block, restored after it."""
    if team is not None:
        attrs["_team_size"] = lambda macs: team
    saved = {name: getattr(mod, name) for name in attrs}
    try:
        for name, value in attrs.items():
            setattr(mod, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(mod, name, value)


def check_against_reference(mod, x, w, b, args, need="both", team=None, **attrs):
    """``mod``'s forward and the gradients ``need`` asks for ("both", "x" or "w"; the other
    must be None) against ``reference``'s, in x's dtype and shapes, at ``tol``; ``team`` and
    ``attrs`` as in ``patched``."""
    ref, dtype = K.get("conv2d", "reference"), x.dtype
    nx, nw = need in ("both", "x"), need in ("both", "w")
    with patched(mod, team, **attrs):
        y = mod.forward(x, w, b, *args)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        gx, gw = mod.backward(gy, x, w, *args, nx, nw)
    y_ref = ref.forward(x, w, b, *args)
    assert y.shape == y_ref.shape and y.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
    assert (gx is None) != nx and (gw is None) != nw
    if nx:
        assert gx.dtype == dtype and gx.shape == x.shape
        np.testing.assert_allclose(gx, gx_r, **tol(dtype))
    if nw:
        assert gw.dtype == dtype and gw.shape == w.shape
        np.testing.assert_allclose(gw, gw_r, **tol(dtype))


def check_close_to_reference(mod, x, w, b, args, rng, team=None, **attrs):
    """Float64 arrays: ``mod``'s forward and both gradients (for a gradient drawn from
    ``rng``) within 1e-10 of ``reference``'s."""
    ref = K.get("conv2d", "reference")
    with patched(mod, team, **attrs):
        y = mod.forward(x, w, b, *args)
        np.testing.assert_allclose(y, ref.forward(x, w, b, *args), rtol=1e-10, atol=1e-10)
        gy = rng.standard_normal(y.shape)
        got = mod.backward(gy, x, w, *args, True, True)
    for g, r in zip(got, ref.backward(gy, x, w, *args, True, True), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)


def check_gradcheck(name, stride, padding, k=3, hw=(7, 6), team=None, **attrs):
    """``tg.gradcheck`` passes for of ``F.conv2d`` with variant ``name`` in float64 on a batch of 2,
    3 -> 4 channels of ``hw`` pixels, a ``k`` x ``k`` kernel and a bias; ``team`` and
    ``attrs`` patch the variant's module as in ``patched``."""
    rng = np.random.default_rng(2)
    x = tg.Tensor(rng.standard_normal((2, 3, *hw)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((4, 3, k, k)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(4), requires_grad=True)
    with patched(K.get("conv2d", name), team, **attrs), K.use(conv2d=name):
        assert tg.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), [x, w, b])


def check_against_torch(name, x, w, b, stride, padding, team=None, **attrs):
    """``F.conv2d`` with variant ``name`` and its backward, in float64, against
    ``torch.nn.functional.conv2d`` within 1e-9; ``team`` and ``attrs`` patch the variant's
    module as in ``patched``."""
    torch = pytest.importorskip("torch")
    x, w, b = (None if a is None else a.astype(np.float64) for a in (x, w, b))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding)
    gy = np.random.default_rng(4).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    gx, gw = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    with patched(K.get("conv2d", name), team, **attrs), K.use(conv2d=name):
        y = F.conv2d(gx, gw, None if b is None else tg.Tensor(b), stride, padding)
        y.backward(gy)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gx.grad.data, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gw.grad.data, tw.grad.numpy(), rtol=1e-9, atol=1e-9)


def assert_same_nonfinite(got, want):
    """NaN and infinities in the same places, the finite values within 1e-10."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, equal_nan=True)


def assert_forward_relu_is_epilogue(got, y0, b):
    """A variant's ``forward_relu`` result ``got`` (y, mask) is, bit for bit, the
    ``bias_relu`` epilogue (kernels/fused ``reference``) applied to its plain forward ``y0``
    (without bias; overwritten here) with bias ``b``."""
    from tapegrad.kernels.fused import reference as R

    want_mask = R.bias_relu_forward(y0, b)
    assert got is not None
    y, mask = got
    assert mask.dtype == np.uint8 and mask.shape == y.shape
    bits = {4: np.uint32, 8: np.uint64}[y.itemsize]
    np.testing.assert_array_equal(y.view(bits), y0.view(bits))
    np.testing.assert_array_equal(mask, want_mask)
