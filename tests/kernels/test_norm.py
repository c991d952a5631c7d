"""Every normalisation variant agrees with ``reference`` (NumPy formulas) over random
shapes: batch-norm train/eval/backward and the row kernels of layer and group norm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad.kernels as K
from tests._sizes import examples

COMPILED = [v for v in K.variants("batch_norm") if v != "reference"]
dtypes = st.sampled_from([np.float32, np.float64])


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)


def _close(a, b, dtype):
    if a is None or b is None:
        assert a is None and b is None
        return
    np.testing.assert_allclose(a, b, **_tol(dtype))


# a batch-norm call: (n, c, s) input, dtype, normalised variance or not
_BN_CASE = dict(
    n=st.integers(1, 6),
    c=st.integers(1, 5),
    s=st.integers(1, 20),
    dtype=dtypes,
    normvar=st.booleans(),
)


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(12), deadline=None)
@given(**_BN_CASE, offset=st.sampled_from([0.0, 3.0, 1000.0]))
def test_batch_norm_matches_reference(variant, n, c, s, dtype, normvar, offset):
    if normvar and n * s < 2:
        n = 2
    rng = np.random.default_rng(n * 100 + c * 10 + s)
    x = (rng.standard_normal((n, c, s)) + offset).astype(dtype)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    gy = rng.standard_normal(x.shape).astype(dtype)
    ref, mod = K.get("batch_norm", "reference"), K.get("batch_norm", variant)
    out_r = ref.bn_forward_train(x, w, b, 1e-5, normvar)
    out = mod.bn_forward_train(x, w, b, 1e-5, normvar)
    assert out[0].dtype == dtype
    for a, r in zip(out, out_r):
        _close(a, r, dtype)
    back_r = ref.bn_backward(gy, x, out_r[1], out_r[2], w, normvar)
    back = mod.bn_backward(gy, x, out[1], out[2], w, normvar)
    # gx is a difference of O(1) terms: scale the tolerance with the input's spread
    np.testing.assert_allclose(back[0], back_r[0], **_tol(dtype))
    for a, r in zip(back[1:], back_r[1:]):
        _close(a, r, dtype)
    sc, sh = rng.standard_normal(c), rng.standard_normal(c)
    _close(mod.bn_forward_eval(x, sc, sh), ref.bn_forward_eval(x, sc, sh), dtype)


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(12), deadline=None)
@given(**_BN_CASE)
def test_batch_norm_relu_matches_reference(variant, n, c, s, dtype, normvar):
    # the fused ReLU: the same output, mask and gradients as bn + bias_relu's reference
    if normvar and n * s < 2:
        n = 2
    rng = np.random.default_rng(n * 100 + c * 10 + s + 7)
    x = rng.standard_normal((n, c, s)).astype(dtype)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    gy = rng.standard_normal(x.shape).astype(dtype)
    ref, mod = K.get("batch_norm", "reference"), K.get("batch_norm", variant)
    out_r = ref.bn_relu_forward_train(x, w, b, 1e-5, normvar)
    out = mod.bn_relu_forward_train(x, w, b, 1e-5, normvar)
    assert out[0].dtype == dtype and out[4].dtype == np.uint8
    plain = mod.bn_forward_train(x, w, b, 1e-5, normvar)[0]
    np.testing.assert_array_equal(out[4], (~(plain <= 0)).astype(np.uint8))
    np.testing.assert_array_equal(out[0], np.maximum(plain, 0))
    for a, r in zip(out[:4], out_r[:4]):
        _close(a, r, dtype)
    back_r = ref.bn_relu_backward(gy, out[4], x, out_r[1], out_r[2], w, normvar)
    back = mod.bn_relu_backward(gy, out[4], x, out[1], out[2], w, normvar)
    for a, r in zip(back, back_r):
        _close(a, r, dtype)
    masked = np.where(out[4].view(bool), gy, dtype(0))
    for a, r in zip(back, mod.bn_backward(masked, x, out[1], out[2], w, normvar)):
        np.testing.assert_array_equal(a, r)  # the unfused kernels' bits


@pytest.mark.parametrize("variant", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 2, 1000), (4, 3, 37), (2, 5, 64)])
def test_batch_norm_relu_long_planes(variant, dtype, shape):
    # planes long enough for the vector loops and their tails (16- and 8-wide steps), on a
    # large mean: the fused ReLU's backward masks gy inside its sums pass and must still
    # give bn_backward's bits on the masked gradient, and the reference's values
    rng = np.random.default_rng(shape[2])
    x = (1000 + rng.standard_normal(shape)).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    ref, mod = K.get("batch_norm", "reference"), K.get("batch_norm", variant)
    out = mod.bn_relu_forward_train(x, w, b, 1e-5, True)
    out_r = ref.bn_relu_forward_train(x, w, b, 1e-5, True)
    assert 0 < out[4].sum() < out[4].size  # both sides of the ReLU
    np.testing.assert_array_equal(out[4], out_r[4])
    for a, r in zip(out[:4], out_r[:4]):
        _close(a, r, dtype)
    back = mod.bn_relu_backward(gy, out[4], x, out[1], out[2], w, True)
    back_r = ref.bn_relu_backward(gy, out[4], x, out_r[1], out_r[2], w, True)
    for a, r in zip(back, back_r):
        _close(a, r, dtype)
    masked = np.where(out[4].view(bool), gy, dtype(0))
    for a, r in zip(back, mod.bn_backward(masked, x, out[1], out[2], w, True)):
        np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("variant", K.variants("batch_norm"))
def test_batch_norm_relu_passes_nan_and_negative_zero(variant):
    # PyTorch's ReLU: NaN passes with its gradient; a zero output keeps no gradient
    mod = K.get("batch_norm", variant)
    x = np.array([[[1.0, -1.0, np.nan, 0.0]], [[1.0, -1.0, 3.0, 0.0]]], np.float32)
    y, mean, invstd, _, mask = mod.bn_relu_forward_train(x, np.ones(1), np.zeros(1), 0.0, False)
    assert np.isnan(y).all() and mask.all()  # the NaN spreads through the mean
    x = np.array([[[2.0, -2.0, 0.0]]], np.float64)
    y, mean, invstd, _, mask = mod.bn_relu_forward_train(x, np.ones(1), np.zeros(1), 0.0, False)
    np.testing.assert_array_equal(mask, [[[1, 0, 0]]])
    np.testing.assert_array_equal(y, [[[2.0, 0.0, 0.0]]])
    gx, gw, gb = mod.bn_relu_backward(np.ones_like(x), mask, x, mean, invstd, np.ones(1), False)
    assert gb[0] == 1.0 and gw[0] == 2.0
    np.testing.assert_allclose(gx, [[[2 / 3, -1 / 3, -1 / 3]]])


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(12), deadline=None)
@given(
    rows=st.integers(1, 12),
    k=st.integers(2, 40),
    p=st.sampled_from([None, 1, 2, 3]),
    dtype=dtypes,
    need=st.booleans(),
)
def test_row_norm_matches_reference(variant, rows, k, p, dtype, need):
    if p is not None:
        rows = max(p, rows - rows % p)  # group norm: whole samples of p groups
    rng = np.random.default_rng(rows * 50 + k)
    x = (rng.standard_normal((rows, k)) * 3 + 2).astype(dtype)
    w = None if p is None else rng.standard_normal((p, k)).astype(dtype)
    b = None if p is None else rng.standard_normal((p, k)).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    ref, mod = K.get("layer_norm", "reference"), K.get("layer_norm", variant)
    out_r, out = ref.row_forward(x, w, b, 1e-5), mod.row_forward(x, w, b, 1e-5)
    for a, r in zip(out, out_r):
        _close(a, r, dtype)
    back_r = ref.row_backward(gy, x, out_r[1], out_r[2], w, need)
    back = mod.row_backward(gy, x, out[1], out[2], w, need)
    _close(back[0], back_r[0], dtype)
    if need and w is not None:
        _close(back[1], back_r[1], dtype)
        _close(back[2], back_r[2], dtype)


@pytest.mark.parametrize("variant", K.variants("batch_norm"))
def test_statistics_survive_a_large_mean(variant):
    # shifted float64 accumulation: var of 1e4 + N(0, 1) data stays accurate in float32
    rng = np.random.default_rng(0)
    x = (1e4 + rng.standard_normal((64, 3, 100))).astype(np.float32)
    mod = K.get("batch_norm", variant)
    _, mean, _, var = mod.bn_forward_train(x, np.ones(3), np.zeros(3), 1e-5, True)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2)), rtol=1e-12)
    _, m2, s2 = mod.row_forward(x.reshape(64, -1), None, None, 0.0)
    np.testing.assert_allclose(1 / s2**2, x64.reshape(64, -1).var(axis=1), rtol=1e-6)


def test_cython_norm_runs_small_calls_on_the_calling_thread():
    # the rule the records declare: below serial_below elements one thread, else the team
    from tapegrad.kernels import norm, threads

    mod = K.get("batch_norm", "fused-cython")
    assert mod.SERIAL_BELOW == norm.SERIAL_BELOW
    for rec in (norm.BatchNormTrainCall, norm.BatchNormEvalCall, norm.LayerNormCall):
        assert rec.serial_below == norm.SERIAL_BELOW
    before = threads.get_num_threads()
    try:
        threads.set_num_threads(2)
        assert mod.team_size(norm.SERIAL_BELOW - 1) == 1
        assert mod.team_size(norm.SERIAL_BELOW) == 2
        threads.set_num_threads(1)
        assert mod.team_size(norm.SERIAL_BELOW) == 1
    finally:
        threads.set_num_threads(before)


@pytest.mark.parametrize("variant", COMPILED)
def test_threaded_norm_calls_match_reference(variant):
    # above the serial bound at 2 threads; planes of 35 values (two vector steps and a
    # tail per image) and rows of 2 * 16 + 3 so every reduction path runs
    from tapegrad.kernels import norm, threads

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((norm.SERIAL_BELOW // 35 // 4 + 1, 4, 35)) + 2).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    ref, mod = K.get("batch_norm", "reference"), K.get("batch_norm", variant)
    x2, gy2 = x.reshape(-1, 35), gy.reshape(-1, 35)
    w2 = rng.standard_normal((1, 35)).astype(np.float32)
    before = threads.get_num_threads()
    try:
        threads.set_num_threads(2)
        out, out_r = (
            mod.bn_forward_train(x, w, b, 1e-5, True),
            ref.bn_forward_train(x, w, b, 1e-5, True),
        )
        back = mod.bn_backward(gy, x, out[1], out[2], w, True)
        fused = mod.bn_relu_forward_train(x, w, b, 1e-5, True)
        fback = mod.bn_relu_backward(gy, fused[4], x, fused[1], fused[2], w, True)
        rows = mod.row_forward(x2, w2, w2, 1e-5)
        rback = mod.row_backward(gy2, x2, rows[1], rows[2], w2, True)
    finally:
        threads.set_num_threads(before)
    for a, r in zip(out, out_r):
        _close(a, r, np.float32)
    for a, r in zip(back, ref.bn_backward(gy, x, out_r[1], out_r[2], w, True)):
        _close(a, r, np.float32)
    fused_r = ref.bn_relu_forward_train(x, w, b, 1e-5, True)
    for a, r in zip(fused, fused_r):
        _close(a, r, np.float32)
    for a, r in zip(fback, ref.bn_relu_backward(gy, fused[4], x, fused_r[1], fused_r[2], w, True)):
        _close(a, r, np.float32)
    rows_r = ref.row_forward(x2, w2, w2, 1e-5)
    for a, r in zip(rows, rows_r):
        _close(a, r, np.float32)
    for a, r in zip(rback, ref.row_backward(gy2, x2, rows_r[1], rows_r[2], w2, True)):
        np.testing.assert_allclose(a, r, rtol=2e-4, atol=2e-3)
