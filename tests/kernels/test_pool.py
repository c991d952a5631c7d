"""Every registered pooling variant agrees with ``reference`` over random shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad.kernels as K
from tapegrad.ops.pool import pool_out_size
from tests._sizes import examples


@st.composite
def pool_case(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ceil = draw(st.booleans())
    hw = tuple(
        draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 9))
        for k, p, d in zip(kernel, padding, dilation)
    )
    out = tuple(
        pool_out_size(s_, k, st_, p, d, ceil)
        for s_, k, st_, p, d in zip(hw, kernel, stride, padding, dilation)
    )
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (n, c, *hw), kernel, stride, padding, dilation, out, dtype


@pytest.mark.parametrize("variant", [v for v in K.variants("max_pool2d") if v != "reference"])
@settings(max_examples=examples(15), deadline=None)
@given(case=pool_case())
def test_max_pool2d_variant_matches_reference(variant, case):
    shape, kernel, stride, padding, dilation, out, dtype = case
    rng = np.random.default_rng(0)
    # distinct values: argmax ties would make the index choice ambiguous between variants
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(dtype)
    ref, mod = K.get("max_pool2d", "reference"), K.get("max_pool2d", variant)
    y_r, i_r = ref.forward(x, kernel, stride, padding, dilation, out)
    y, i = mod.forward(x, kernel, stride, padding, dilation, out)
    np.testing.assert_array_equal(y, y_r)
    np.testing.assert_array_equal(i, i_r)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(
        mod.backward(gy, i, x.shape), ref.backward(gy, i_r, x.shape), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("variant", [v for v in K.variants("max_pool2d") if v != "reference"])
@pytest.mark.parametrize("window", [((2, 2), (2, 2)), ((3, 2), (1, 2)), ((2, 3), (2, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_ties_pick_first_in_scan_order(variant, window, dtype):
    # windows fully inside the input take the unrolled / unchecked paths; with values
    # drawn from {0, 1, 2} most windows tie and the index must still be the first maximum
    kernel, stride = window
    shape = (2, 3, 7, 8)
    out = tuple(pool_out_size(s, k, t, 0, 1, False) for s, k, t in zip(shape[2:], kernel, stride))
    x = np.random.default_rng(1).integers(0, 3, shape).astype(dtype)
    ref, mod = K.get("max_pool2d", "reference"), K.get("max_pool2d", variant)
    y_r, i_r = ref.forward(x, kernel, stride, (0, 0), (1, 1), out)
    y, i = mod.forward(x, kernel, stride, (0, 0), (1, 1), out)
    np.testing.assert_array_equal(y, y_r)
    np.testing.assert_array_equal(i, i_r)
    gy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(
        mod.backward(gy, i, x.shape), ref.backward(gy, i_r, x.shape), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("variant", [v for v in K.variants("max_pool2d") if v != "reference"])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (6, 5), (10, 34)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_2x2_rows_pick_the_scan_order_tap(variant, hw, dtype):
    # the 2x2 stride-2 window: even widths take the whole plane's row pairs in one run, odd
    # ones row by row; ties, NaNs (the last in scan order wins) and -inf windows pick the
    # reference's tap, on planes wider than a vector and narrower
    shape = (2, 3, *hw)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, shape).astype(dtype)
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.1] = -np.inf
    out = (hw[0] // 2, hw[1] // 2)
    ref, mod = K.get("max_pool2d", "reference"), K.get("max_pool2d", variant)
    y_r, i_r = ref.forward(x, (2, 2), (2, 2), (0, 0), (1, 1), out)
    y, i = mod.forward(x, (2, 2), (2, 2), (0, 0), (1, 1), out)
    np.testing.assert_array_equal(y, y_r)
    np.testing.assert_array_equal(i, i_r)


@pytest.mark.parametrize("variant", [v for v in K.variants("max_pool2d") if v != "reference"])
@settings(max_examples=examples(15), deadline=None)
@given(
    h=st.integers(2, 40),
    w=st.integers(2, 80),
    nan=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_max_pool2d_2x2_forward_and_backward_match_reference(variant, h, w, nan, dtype):
    # the 2x2 stride-2 window over planes of any width, odd sizes included (their last row
    # and column belong to no window): vector rows with masked tails forward, and the
    # backward's one write per input pixel, against the reference's scatter-add
    shape = (2, 2, h, w)
    rng = np.random.default_rng(h * 100 + w)
    x = rng.integers(0, 4, shape).astype(dtype)
    if nan:
        x[rng.random(shape) < 0.05] = np.nan
    out = (h // 2, w // 2)
    ref, mod = K.get("max_pool2d", "reference"), K.get("max_pool2d", variant)
    y_r, i_r = ref.forward(x, (2, 2), (2, 2), (0, 0), (1, 1), out)
    y, i = mod.forward(x, (2, 2), (2, 2), (0, 0), (1, 1), out)
    np.testing.assert_array_equal(y, y_r)
    np.testing.assert_array_equal(i, i_r)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx_r = ref.backward(gy, i_r, x.shape)
    np.testing.assert_array_equal(mod.backward(gy, i, x.shape), gx_r)
    if hasattr(mod, "_backward"):  # the Cython driver on a stale buffer: every pixel written
        gx = np.full(shape, np.nan, dtype)
        mod._backward(gy, i, gx)
        np.testing.assert_array_equal(gx, gx_r)


@pytest.mark.parametrize("variant", [v for v in K.variants("max_pool2d") if v != "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_backward_adds_shared_pixels_of_overlapping_windows(variant, dtype):
    # a 3x3 stride-2 pool with padding 1 has the output size of a 2x2 stride-2 pool, but its
    # windows overlap: an index may leave its 2x2 cell and two outputs may pick one pixel,
    # whose gradients must add up (the backward cannot write pixel by pixel there)
    shape = (2, 3, 16, 18)
    x = np.zeros(shape, dtype)
    x[:, :, 1::2, 1::2] = 1.0  # each of these is the maximum of up to four windows
    out = (8, 9)
    ref, mod = K.get("max_pool2d", "reference"), K.get("max_pool2d", variant)
    y_r, i_r = ref.forward(x, (3, 3), (2, 2), (1, 1), (1, 1), out)
    y, i = mod.forward(x, (3, 3), (2, 2), (1, 1), (1, 1), out)
    np.testing.assert_array_equal(i, i_r)
    gy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    gx = mod.backward(gy, i, x.shape)
    np.testing.assert_allclose(gx, ref.backward(gy, i_r, x.shape), rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(np.bincount(i[0, 0].ravel())) < i[0, 0].size  # shared pixels


@pytest.mark.parametrize("variant", [v for v in K.variants("avg_pool2d") if v != "reference"])
@settings(max_examples=examples(15), deadline=None)
@given(case=pool_case(), cip=st.booleans(), ceil=st.booleans())
def test_avg_pool2d_variant_matches_reference(variant, case, cip, ceil):
    shape, kernel, stride, padding, _, _, dtype = case
    out = tuple(
        pool_out_size(n, k, s, p, 1, ceil) for n, k, s, p in zip(shape[2:], kernel, stride, padding)
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    ref, mod = K.get("avg_pool2d", "reference"), K.get("avg_pool2d", variant)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y = mod.forward(x, kernel, stride, padding, out, cip)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref.forward(x, kernel, stride, padding, out, cip), **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(
        mod.backward(gy, x.shape, kernel, stride, padding, cip),
        ref.backward(gy, x.shape, kernel, stride, padding, cip),
        **tol,
    )


@pytest.mark.parametrize(
    "variant", [v for v in K.variants("adaptive_avg_pool2d") if v != "reference"]
)
@settings(max_examples=examples(15), deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    ho=st.integers(1, 6),
    wo=st.integers(1, 6),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_adaptive_avg_pool2d_variant_matches_reference(variant, n, c, h, w, ho, wo, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    ref, mod = K.get("adaptive_avg_pool2d", "reference"), K.get("adaptive_avg_pool2d", variant)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y = mod.forward(x, (ho, wo))
    np.testing.assert_allclose(y, ref.forward(x, (ho, wo)), **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(mod.backward(gy, x.shape), ref.backward(gy, x.shape), **tol)


def test_adaptive_reference_global_is_mean():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    y = K.get("adaptive_avg_pool2d", "reference").forward(x, (1, 1))
    np.testing.assert_allclose(y[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-12)
