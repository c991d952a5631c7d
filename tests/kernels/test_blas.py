"""kernels.blas.matmul: NumPy's product, on one BLAS thread only when the product is small."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import tapegrad as tg
from tapegrad.kernels import blas


@pytest.mark.parametrize(
    "sa, sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 6)), ((4,), (4, 2)), ((2, 1, 3, 4), (5, 4, 2))]
)
def test_matches_numpy(sa, sb, rng):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))


def test_small_product_restores_the_thread_count(rng):
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(2)
        calls = []
        real = blas._blas_setters()
        blas._setters = [lambda n, s=s: (calls.append(n), s(n)) for s in real]
        blas.matmul(rng.standard_normal((8, 8)), rng.standard_normal((8, 8)))
        assert calls[: len(real)] == [1] * len(real) and calls[-1] == 2
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}
        calls.clear()
        big = rng.standard_normal((200, 200)).astype(np.float32)
        blas.matmul(big, big)
        assert calls == []  # 8M multiply-adds: above SMALL_MACS, no switching
    finally:
        blas._setters = None
        tg.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, k, n", [(40, 30, 70), (70, 30, 40), (1, 5, 3)])
def test_team_split_matches_numpy(dtype, ta, tb, m, k, n, rng):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    a, b = (a.T if ta else a), (b.T if tb else b)
    got = blas.team_split(a, b, None, 2)
    if got is None:  # no Cython build or no ILP64 OpenBLAS: the caller uses np.matmul
        pytest.skip("no cblas_?gemm reachable from the Cython kernels here")
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=tol, atol=tol)


def test_team_split_stacks_and_out(rng):
    a = rng.standard_normal((3, 20, 50))
    b = rng.standard_normal((3, 50, 40)).transpose(0, 2, 1).copy().transpose(0, 2, 1)
    out = np.empty((3, 20, 40))
    got = blas.team_split(a, b, out, 2)
    if got is None:
        pytest.skip("no cblas_?gemm reachable from the Cython kernels here")
    assert got is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)


def test_team_split_declines_what_it_cannot_split(rng):
    a = rng.standard_normal((6, 4))
    assert blas.team_split(a.astype(np.int64), a.T.astype(np.int64), None, 2) is None
    assert blas.team_split(a, a.T.astype(np.float32), None, 2) is None  # mixed dtypes
    assert blas.team_split(a[::2, ::2], a[::2, ::2].T, None, 2) is None  # no unit stride
    bad_out = np.empty((6, 6), order="F")
    assert blas.team_split(a, a.T, bad_out, 2) is None
    sq = rng.standard_normal((8, 8))
    assert blas.team_split(sq, sq, sq, 2) is None  # out overlaps an operand
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(2)
        sq = rng.standard_normal((300, 300))
        want = sq @ sq
        np.testing.assert_allclose(blas.matmul(sq, sq, out=sq), want, rtol=1e-12, atol=1e-10)
    finally:
        tg.set_num_threads(before)


def test_large_products_run_on_the_team_and_small_ones_do_not(rng, monkeypatch):
    before = tg.get_num_threads()
    seen = []
    real = blas.team_split
    monkeypatch.setattr(blas, "team_split", lambda *a: (seen.append(a[0].shape), real(*a))[1])
    try:
        tg.set_num_threads(2)
        small = rng.standard_normal((8, 8)).astype(np.float32)
        big = rng.standard_normal((200, 200)).astype(np.float32)
        blas.matmul(small, small)
        assert seen == []
        np.testing.assert_allclose(blas.matmul(big, big), big @ big, rtol=1e-4, atol=1e-3)
        assert seen == [(200, 200)]
        tg.set_num_threads(1)
        blas.matmul(big, big)  # one thread: NumPy's own call
        assert seen == [(200, 200)]
    finally:
        tg.set_num_threads(before)
