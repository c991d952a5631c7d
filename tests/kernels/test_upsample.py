"""Every upsample2d variant agrees with ``reference`` (forward and backward, nearest and
bilinear), on both sides of the serial/parallel size threshold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
from tapegrad.kernels.upsample import UpsampleCall, direct_numba
from tests._sizes import examples

VARIANTS = K.variants("upsample2d")
COMPILED = [v for v in VARIANTS if v != "reference"]


def _check(variant, x, out_hw, mode, ac, scales, gy_seed=0):
    call = UpsampleCall.of(x, out_hw, mode, ac, scales)
    ref, mod = K.get("upsample2d", "reference"), K.get("upsample2d", variant)
    y_r, y = call.forward(ref, x), call.forward(mod, x)
    assert y.shape == (*x.shape[:2], *out_hw) and y.dtype == x.dtype
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, y_r, rtol=tol, atol=tol)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(x.dtype)
    gx_r, gx = call.backward(ref, gy), call.backward(mod, gy)
    assert gx.shape == x.shape and gx.dtype == x.dtype
    np.testing.assert_allclose(gx, gx_r, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(12), deadline=None)
@given(
    n=st.integers(0, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    ho=st.integers(1, 13),
    wo=st.integers(1, 13),
    mode=st.sampled_from(["nearest", "bilinear"]),
    ac=st.booleans(),
    scaled=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_upsample_matches_reference(variant, n, c, h, w, ho, wo, mode, ac, scaled, dtype, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)
    scales = (ho / h + 0.01, wo / w + 0.01) if scaled else None
    _check(variant, x, (ho, wo), mode, ac and mode == "bilinear", scales, seed)


@pytest.mark.parametrize("variant", COMPILED)
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_parallel_path_matches_reference(variant, mode):
    """Outputs past the serial threshold, on 1 and 2 threads."""
    x = np.random.default_rng(1).standard_normal((2, 4, 50, 50)).astype(np.float32)
    assert 2 * 4 * 100 * 100 > direct_numba.SERIAL
    old = tg.get_num_threads()
    try:
        for threads in (1, 2):
            tg.set_num_threads(threads)
            _check(variant, x, (100, 100), mode, False, None)
    finally:
        tg.set_num_threads(old)


def test_tables_follow_pytorch_rules():
    """Nearest: floor(i * in / out), i // 2 for an exact doubling; bilinear with
    align_corners maps the corners onto each other."""
    x = np.zeros((1, 1, 3, 4), np.float32)
    ih, iw = K.upsample.tables(UpsampleCall.of(x, (5, 8), "nearest"))
    np.testing.assert_array_equal(ih, [0, 0, 1, 1, 2])  # floor(i * 0.6)
    np.testing.assert_array_equal(iw, [0, 0, 1, 1, 2, 2, 3, 3])
    h0, h1, hl0, hl1, *_ = K.upsample.tables(UpsampleCall.of(x, (5, 8), "bilinear", True))
    np.testing.assert_array_equal(h0, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(h1, [1, 1, 2, 2, 2])
    np.testing.assert_allclose(hl1, [0, 0.5, 0, 0.5, 0])
