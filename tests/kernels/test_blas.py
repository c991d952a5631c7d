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
