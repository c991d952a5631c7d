"""Every dropout variant agrees with ``reference``: masks bit for bit (same Philox
stream), values, and the same on any thread count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
from tests._sizes import examples

COMPILED = [v for v in K.variants("dropout") if v != "reference"]

shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)
dtypes = st.sampled_from([np.float32, np.float64])


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(12), deadline=None)
@given(
    shape=shapes,
    dtype=dtypes,
    p=st.floats(0, 1),
    scale=st.booleans(),
    seed=st.integers(0, 2**63),
    step=st.integers(0, 2**20),
)
def test_dropout_matches_reference(variant, shape, dtype, p, scale, seed, step):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    f = 0.0 if p == 1 else (1 / (1 - p) if scale else 1.0)
    ref, mod = K.get("dropout", "reference"), K.get("dropout", variant)
    y_r, k_r = ref.forward(x, seed, step, p, f)
    y, k = mod.forward(x, seed, step, p, f)
    assert k.dtype == np.uint8 and k.shape == x.shape
    np.testing.assert_array_equal(k, k_r)
    np.testing.assert_array_equal(y, y_r)
    gy = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(mod.backward(gy, k, f), ref.backward(gy, k_r, f))


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(10), deadline=None)
@given(planes=st.integers(1, 40), s=st.integers(1, 30), dtype=dtypes, p=st.floats(0, 1))
def test_channel_dropout_matches_reference(variant, planes, s, dtype, p):
    x = np.random.default_rng(1).standard_normal((planes, s)).astype(dtype)
    ref, mod = K.get("dropout2d", "reference"), K.get("dropout2d", variant)
    y_r, k_r = ref.channel_forward(x, 9, 4, p, 2.0)
    y, k = mod.channel_forward(x, 9, 4, p, 2.0)
    np.testing.assert_array_equal(k, k_r)
    np.testing.assert_array_equal(y, y_r)
    np.testing.assert_array_equal(mod.channel_backward(x, k, 2.0), ref.channel_backward(x, k, 2.0))


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(10), deadline=None)
@given(shape=shapes, dtype=dtypes, sigma=st.floats(0, 3))
def test_gaussian_matches_reference(variant, shape, dtype, sigma):
    x = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    ref, mod = K.get("gaussian_dropout", "reference"), K.get("gaussian_dropout", variant)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        mod.gaussian_forward(x, 5, 6, sigma),
        ref.gaussian_forward(x, 5, 6, sigma),
        rtol=tol,
        atol=tol,
    )
    np.testing.assert_allclose(
        mod.gaussian_backward(x, 5, 6, sigma),
        ref.gaussian_backward(x, 5, 6, sigma),
        rtol=tol,
        atol=tol,
    )


def test_backends_and_thread_counts_give_identical_outputs():
    x = np.random.default_rng(3).standard_normal((6, 5, 17, 13)).astype(np.float32)
    old = tg.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            tg.set_num_threads(threads)
            for v in COMPILED:
                mod = K.get("dropout", v)
                y, k = mod.forward(x, 42, 7, 0.3, 1 / 0.7)
                outs.append((y, k, mod.gaussian_forward(x, 42, 7, 0.4)))
    finally:
        tg.set_num_threads(old)
    for y, k, g in outs[1:]:
        np.testing.assert_array_equal(y, outs[0][0])
        np.testing.assert_array_equal(k, outs[0][1])
        np.testing.assert_array_equal(g, outs[0][2])
