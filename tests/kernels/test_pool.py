"""Every registered pooling variant agrees with ``reference`` over random shapes."""

from __future__ import annotations

import numpy as np
import pytest
import tapegrad.kernels as K
from hypothesis import given, settings
from hypothesis import strategies as st

from tapegrad.ops.pool import pool_out_size


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
@settings(max_examples=30, deadline=None)
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
