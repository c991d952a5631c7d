"""Every ReLU variant agrees with ``reference`` bit for bit (NaN, inf, -0.0 included), on
both sides of the serial/parallel size threshold; the op gradchecks on every variant and
matches PyTorch's relu and its gradient."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
from tapegrad.kernels.activation import SERIAL_BELOW, fused_numba
from tests._sizes import examples

VARIANTS = K.variants("relu")
COMPILED = [v for v in VARIANTS if v != "reference"]
SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -1e-40]

shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)


def _with_specials(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flat = x.reshape(-1)
    at = rng.integers(0, flat.size, size=min(flat.size, 2 * len(SPECIAL)))
    flat[at] = np.resize(np.array(SPECIAL, x.dtype), at.size)
    return x


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    bits = {4: np.uint32, 8: np.uint64}[a.itemsize]
    np.testing.assert_array_equal(a.view(bits), b.view(bits))  # +0.0 vs -0.0 and NaNs too


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(15), deadline=None)
@given(
    shape=shapes,
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_relu_matches_reference(variant, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = _with_specials(rng.standard_normal(shape).astype(dtype), rng)
    g = _with_specials(rng.standard_normal(shape).astype(dtype), rng)
    ref, mod = K.get("relu", "reference"), K.get("relu", variant)
    y_r, m_r = ref.relu_forward(x)
    y, m = mod.relu_forward(x)
    assert m.dtype == np.uint8 and m.shape == x.shape
    np.testing.assert_array_equal(m, m_r)
    _same_bits(y, y_r)
    _same_bits(mod.relu_backward(g, m), ref.relu_backward(g, m_r))


@pytest.mark.parametrize("variant", COMPILED)
@pytest.mark.parametrize(
    "n", [fused_numba.SERIAL - 1, fused_numba.SERIAL + 4097, 3 * 65536, SERIAL_BELOW + 4097]
)
def test_relu_parallel_path_matches_reference(variant, n):
    """Sizes past the serial threshold, with a ragged last block, on 1 and 2 threads."""
    rng = np.random.default_rng(n)
    x = _with_specials(rng.standard_normal(n).astype(np.float32), rng)
    ref, mod = K.get("relu", "reference"), K.get("relu", variant)
    y_r, m_r = ref.relu_forward(x)
    old = tg.get_num_threads()
    try:
        for threads in (1, 2):
            tg.set_num_threads(threads)
            y, m = mod.relu_forward(x)
            _same_bits(y, y_r)
            _same_bits(mod.relu_backward(x, m), ref.relu_backward(x, m_r))
    finally:
        tg.set_num_threads(old)


def test_cython_flat_passes_run_small_calls_on_the_calling_thread():
    # the rule the records declare: below serial_below elements one thread, else the team
    from tapegrad.kernels import activation, fused, threads

    for family, records in (
        ("relu", (activation.ReluCall,)),
        ("bias_relu", (fused.BiasReluCall, fused.AddReluCall)),
    ):
        mod = K.get(family, "fused-cython")
        bound = records[0].serial_below
        assert mod.SERIAL_BELOW == bound and all(r.serial_below == bound for r in records)
        before = threads.get_num_threads()
        try:
            threads.set_num_threads(2)
            assert mod.team_size(bound - 1) == 1
            assert mod.team_size(bound) == 2
            threads.set_num_threads(1)
            assert mod.team_size(bound) == 1
        finally:
            threads.set_num_threads(before)


@pytest.mark.parametrize("variant", VARIANTS)
def test_relu_gradcheck_every_variant(variant):
    x = np.random.default_rng(3).standard_normal((3, 4, 5))
    x[np.abs(x) < 0.05] += 0.1  # keep the finite differences off the kink
    with K.use(relu=variant):
        assert tg.gradcheck(F.relu, [tg.tensor(x, requires_grad=True, dtype=np.float64)])


def test_relu_non_contiguous_and_other_dtypes():
    x = np.random.default_rng(4).standard_normal((6, 8)).astype(np.float32)
    t = tg.Tensor(x, requires_grad=True)
    y = F.relu(t.T)  # a transposed (F-ordered) view goes through a contiguous copy
    y.backward(np.ones((8, 6), np.float32))
    np.testing.assert_array_equal(y.numpy(), np.maximum(x.T, 0))
    np.testing.assert_array_equal(t.grad.numpy(), (x > 0).astype(np.float32))
    xi = tg.Tensor(np.array([-2, 0, 3], np.int64))
    np.testing.assert_array_equal(F.relu(xi).numpy(), [0, 0, 3])  # NumPy path


def test_relu_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = _with_specials(rng.standard_normal((4, 3, 17, 13)).astype(np.float32), rng)
    x[np.isnan(x)] = 0.5  # torch.relu(NaN) is NaN; tapegrad's relu maps NaN to 0 (documented)
    g = rng.standard_normal(x.shape).astype(np.float32)
    for v in VARIANTS:
        with K.use(relu=v):
            t = tg.Tensor(x, requires_grad=True)
            y = F.relu(t)
            y.backward(g)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        ty = torch.relu(tx)
        ty.backward(torch.from_numpy(g))
        np.testing.assert_array_equal(y.numpy(), ty.detach().numpy(), err_msg=v)
        np.testing.assert_array_equal(t.grad.numpy(), tx.grad.numpy(), err_msg=v)
