"""Every variant of every pointwise activation (kernels/pointwise) agrees with ``reference``
over random shapes, both dtypes, NaN/inf/-0.0 included, on both sides of the serial/parallel
size threshold; and each record validates its arguments as its declaration says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
from tapegrad.kernels.pointwise import RECORDS, GeluCall, LeakyReluCall, reference
from tapegrad.kernels.pointwise import fused_numba as numba_variant
from tests._sizes import examples

SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -3.0, 3.0, 25.0, -800.0]
# (record, keyword arguments): every activation, GELU both ways, non-default parameters
CALLS = [(r, {}) for r in RECORDS] + [
    (GeluCall, {"approximate": "tanh"}),
    (LeakyReluCall, {"negative_slope": -0.3}),
    (RECORDS[1], {"alpha": 0.5}),
    (RECORDS[6], {"beta": 2.0, "threshold": 3.0}),
]
IDS = [f"{r.op}{''.join(f'-{v}' for v in kw.values())}" for r, kw in CALLS]
COMPILED = ["fused-numba", "fused-cython"]
# compiled variants compute in float64 as reference does: only libm's last bit may differ
TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}

shapes = st.lists(st.integers(1, 7), min_size=0, max_size=4).map(tuple)


def _with_specials(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flat = x.reshape(-1)
    at = rng.integers(0, flat.size, size=min(flat.size, len(SPECIAL)))
    flat[at] = np.resize(np.array(SPECIAL, x.dtype), at.size)
    return x


def _agree(a: np.ndarray, b: np.ndarray, dtype, what: str) -> None:
    assert a.dtype == b.dtype == dtype and a.shape == b.shape, what
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
    np.testing.assert_allclose(a, b, equal_nan=True, err_msg=what, **TOL[dtype])


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(12), deadline=None)
@given(
    case=st.sampled_from(range(len(CALLS))),
    shape=shapes,
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_variant_matches_reference(variant, case, shape, dtype, seed):
    rec, kw = CALLS[case]
    rng = np.random.default_rng(seed)
    x = _with_specials((4 * rng.standard_normal(shape)).astype(dtype), rng)
    g = _with_specials(rng.standard_normal(shape).astype(dtype), rng)
    call = rec.of(x, **kw)
    ref, mod = K.get(rec.op, "reference"), K.get(rec.op, variant)
    _agree(call.forward(mod, x), call.forward(ref, x), dtype, f"{rec.op} {kw} forward")
    _agree(call.backward(mod, g, x), call.backward(ref, g, x), dtype, f"{rec.op} {kw} backward")


@pytest.mark.parametrize("variant", COMPILED)
def test_parallel_path_matches_reference(variant):
    """Past the serial threshold with a ragged last block, on 1 and 2 threads, every kind."""
    n = numba_variant.SERIAL + 4097
    rng = np.random.default_rng(n)
    x = _with_specials((4 * rng.standard_normal(n)).astype(np.float32), rng)
    old = tg.get_num_threads()
    try:
        for rec, kw in CALLS:
            call = rec.of(x, **kw)
            ref, mod = K.get(rec.op, "reference"), K.get(rec.op, variant)
            want_y, want_g = call.forward(ref, x), call.backward(ref, x, x)
            for threads in (1, 2):
                tg.set_num_threads(threads)
                _agree(call.forward(mod, x), want_y, np.float32, f"{rec.op} y {threads}")
                _agree(call.backward(mod, x, x), want_g, np.float32, f"{rec.op} g {threads}")
    finally:
        tg.set_num_threads(old)


def test_backward_is_g_times_derivative():
    """The backward is g * reference.derivative (the formula double backward builds on),
    except where PyTorch zeroes the gradient outright."""
    x = np.linspace(-6, 6, 97)
    g = np.random.default_rng(1).standard_normal(x.size)
    for rec, kw in CALLS:
        call = rec.of(x, **kw)
        d = reference.derivative(call.kind(), x, *call.params())
        np.testing.assert_allclose(call.backward(reference, g, x), g * d, rtol=1e-15)
        # and the derivative is the forward's slope (central differences, off the kinks)
        h = 1e-6
        fd = (call.forward(reference, x + h) - call.forward(reference, x - h)) / (2 * h)
        a, b = call.params()
        kinks = [0.0, -3.0, 3.0] + ([b / a] if rec.op == "softplus" else [])
        off = np.min(np.abs(x[:, None] - np.array(kinks)), axis=1) > 1e-3
        np.testing.assert_allclose(d[off], fd[off], rtol=1e-5, atol=1e-7, err_msg=rec.op)


def test_hard_zeros_ignore_nan_and_inf_gradients():
    """Outside Hardsigmoid's ramp and at or below -3 for Hardswish the gradient is 0 even
    for a NaN or infinite output gradient (PyTorch returns a literal zero there)."""
    x = np.array([-5.0, -3.0, 3.0, 5.0])
    g = np.array([np.nan, np.inf, -np.inf, np.nan])
    for v in K.variants("hardsigmoid"):
        mod = K.get("hardsigmoid", v)
        call = RECORDS[5].of(x)
        np.testing.assert_array_equal(call.backward(mod, g, x), [0, 0, 0, 0])
        hs = RECORDS[4].of(x)
        out = hs.backward(K.get("hardswish", v), g, x)
        np.testing.assert_array_equal(out[:2], [0, 0])
        assert np.isneginf(out[2]) and np.isnan(out[3])


def test_empty_and_every_rank():
    for shape in [(0,), (3, 0, 2), (), (5,), (2, 3, 4, 5, 1)]:
        x = np.full(shape, 0.5)
        for rec, kw in CALLS:
            call = rec.of(x, **kw)
            for v in K.variants(rec.op):
                y = call.forward(K.get(rec.op, v), x)
                assert y.shape == x.shape and y.dtype == x.dtype


def test_records_validate_arguments():
    x = np.zeros(3, np.float32)
    assert LeakyReluCall.of(x).negative_slope == 0.01
    assert LeakyReluCall.of(x, negative_slope=np.float32(0.5)).negative_slope == 0.5
    with pytest.raises(TypeError, match=r"^leaky_relu: negative_slope must be a real number"):
        LeakyReluCall.of(x, negative_slope="0.1")
    with pytest.raises(ValueError, match=r"^gelu: approximate must be 'none' or 'tanh'"):
        GeluCall.of(x, approximate="exact")
    with pytest.raises(TypeError, match=r"^gelu: unexpected argument 'alpha'"):
        GeluCall.of(x, alpha=1.0)
    with pytest.raises(TypeError, match=r"^gelu: input must be float32 or float64, got int64"):
        GeluCall.of(np.zeros(3, np.int64))
    with pytest.raises(TypeError, match=r"float16"):
        GeluCall.of(np.zeros(3, np.float16))


def test_records_are_declared_and_derive_their_cases():
    declared = K.declarations()
    for rec in RECORDS:
        assert declared[rec.op] is rec and rec.elementwise
        assert set(K.variants(rec.op)) >= {"reference", *COMPILED}
        call = rec.of(np.zeros((2, 3, 4, 5), np.float32))
        assert call.bench_params() == {"N": 2, "C": 3, "H": 4, "W": 5}
        assert rec.of(np.zeros(3, np.float32)).bench_params() is None
        assert {} in rec.fuzz_arguments()
        for arg, value, exc, _words in rec.bad_arguments():
            with pytest.raises(exc, match=rf"^{rec.functional}: {arg}"):
                rec.of(np.zeros(2), **{arg: value})
    p = LeakyReluCall.of(np.zeros((2, 3), np.float32), negative_slope=0.2).bench_params()
    assert p == {"N": 2, "C": 3, "H": 1, "W": 1, "negative_slope": 0.2}
    assert "negative_slope=0.2" in LeakyReluCall.of(np.zeros(2), negative_slope=0.2).key()
