"""Every conv_transpose2d variant agrees with ``reference``; the reference is conv2d's adjoint."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad.kernels as K
from tests._sizes import examples

VARIANTS = [v for v in K.variants("conv_transpose2d") if v != "reference"]


@st.composite
def ct_case(draw):
    n = draw(st.integers(1, 4))
    gkind = draw(st.sampled_from(["one", "two", "depthwise"]))
    if gkind == "one":
        groups, c, og = 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elif gkind == "two":
        groups, c, og = 2, 2 * draw(st.integers(1, 2)), draw(st.integers(1, 3))
    else:
        c = draw(st.integers(1, 4))
        groups, og = c, draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    outpad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    out = [
        (n_ - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n_, s, p, d, k, op in zip((h, w), stride, padding, dilation, (kh, kw), outpad)
    ]
    if min(out) < 1:  # padding cropped everything: make it valid instead
        padding = (0, 0)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    bias = draw(st.booleans())
    return n, c, og, h, w, kh, kw, stride, padding, outpad, dilation, groups, dtype, bias


def _arrays(case):
    n, c, og, h, w, kh, kw, stride, padding, outpad, dilation, groups, dtype, bias = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c, og, kh, kw)).astype(dtype)
    b = rng.standard_normal(og * groups).astype(dtype) if bias else None
    return x, wt, b, (stride, padding, outpad, dilation, groups)


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=examples(15), deadline=None)
@given(case=ct_case())
def test_conv_transpose2d_variant_matches_reference(variant, case):
    x, w, b, args = _arrays(case)
    dtype = x.dtype
    ref, mod = K.get("conv_transpose2d", "reference"), K.get("conv_transpose2d", variant)
    y_r = ref.forward(x, w, b, *args)
    y = mod.forward(x, w, b, *args)
    assert y.shape == y_r.shape and y.dtype == dtype
    np.testing.assert_allclose(y, y_r, **_tol(dtype))
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
    gx, gw = mod.backward(gy, x, w, *args, True, True)
    np.testing.assert_allclose(gx, gx_r, **_tol(dtype))
    np.testing.assert_allclose(gw, gw_r, **_tol(dtype))
    assert mod.backward(gy, x, w, *args, True, False)[1] is None


@settings(max_examples=examples(15), deadline=None)
@given(case=ct_case())
def test_reference_is_conv2d_adjoint(case):
    """<conv_transpose(x), z> == <x, conv2d(z)> with the same weight, stride, padding."""
    x, w, _, (stride, padding, outpad, dilation, groups) = _arrays(case)
    x, w = x.astype(np.float64), w.astype(np.float64)
    y = K.get("conv_transpose2d", "reference").forward(
        x, w, None, stride, padding, outpad, dilation, groups
    )
    z = np.random.default_rng(2).standard_normal(y.shape)
    cz = K.get("conv2d", "reference").forward(z, w, None, stride, padding, dilation, groups)
    # output_padding >= stride (allowed when < dilation) gives conv2d extra trailing
    # rows; the transpose is the adjoint of the conv cropped to x's size
    cz = cz[:, :, : x.shape[2], : x.shape[3]]
    assert cz.shape == x.shape
    np.testing.assert_allclose((y * z).sum(), (x * cz).sum(), rtol=1e-9, atol=1e-9)


def test_seed_transpose_example():
    """The homework's 2-D transpose convolution, in every variant."""
    x = np.array([[[[-1.0, 2], [3, 1]]]])
    w = np.array([[[[1.0, -1], [0, 1]]]])
    want = np.array([[-1.0, 3, -2], [3, -3, 1], [0, 3, 1]])
    for v in K.variants("conv_transpose2d"):
        y = K.get("conv_transpose2d", v).forward(x, w, None, (1, 1), (0, 0), (0, 0), (1, 1), 1)
        np.testing.assert_allclose(y[0, 0], want, err_msg=v)


@settings(max_examples=examples(12), deadline=None)
@given(case=ct_case(), team=st.integers(1, 3), need=st.sampled_from(["both", "x", "w"]))
def test_col2im_cython_threaded_drivers_match_reference(case, team, need):
    """col2im-cython on im2col-cython's threaded drivers (each thread whole images, its own
    buffers and BLAS calls) forced on every shape, a team of 1 to 3 threads, each gradient
    asked alone."""
    from tapegrad.kernels import cblas

    try:
        mod = K.get("conv_transpose2d", "col2im-cython")
    except RuntimeError:
        pytest.skip("the Cython kernels are not built")
    if cblas.gemm_addresses() is None:
        pytest.skip("NumPy's BLAS is not an ILP64 OpenBLAS: no threaded drivers")
    x, w, b, args = _arrays(case)
    if w.shape[2:] == (1, 1) and args[0] == (1, 1) and args[1] == (0, 0):
        w = np.ascontiguousarray(np.repeat(w, 2, axis=3))  # 1x1 stride 1: a GEMM, not these
    dtype = x.dtype
    conv = mod._conv
    saved = conv._THREADS_MIN_PLANE, conv._team_size
    try:
        conv._THREADS_MIN_PLANE, conv._team_size = 0, lambda macs: team
        assert mod._plan(x, w, *args[:4])[0] is not None
        y = mod.forward(x, w, b, *args)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        nx, nw = need in ("both", "x"), need in ("both", "w")
        gx, gw = mod.backward(gy, x, w, *args, nx, nw)
    finally:
        conv._THREADS_MIN_PLANE, conv._team_size = saved
    ref = K.get("conv_transpose2d", "reference")
    np.testing.assert_allclose(y, ref.forward(x, w, b, *args), **_tol(dtype))
    gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
    assert (gx is None) != nx and (gw is None) != nw
    if nx:
        np.testing.assert_allclose(gx, gx_r, **_tol(dtype))
    if nw:
        assert gw.shape == w.shape and gw.dtype == dtype
        np.testing.assert_allclose(gw, gw_r, **_tol(dtype))
