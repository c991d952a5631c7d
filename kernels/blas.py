"""GEMMs through NumPy's BLAS with the thread count scaled to the work.

Waking a second BLAS thread for a small product costs more than it saves, and on a machine
shared with other processes the wait for a descheduled worker turned 0.2 ms products into
5-7 ms ones. Products below ``SMALL_MACS`` multiply-adds run on one BLAS thread; larger ones
use ``tapegrad.set_num_threads``'s count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import threads

SMALL_MACS = 4_000_000

_setters: list[Callable[[int], object]] | None = None


def _blas_setters() -> list[Callable[[int], object]]:
    global _setters
    if _setters is None:
        from threadpoolctl import ThreadpoolController

        libs = ThreadpoolController().select(user_api="blas").lib_controllers
        _setters = [lib.set_num_threads for lib in libs]
    return _setters


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` on one BLAS thread when the product is small."""
    m = a.shape[-2] if a.ndim > 1 else 1
    k = a.shape[-1]
    n = b.shape[-1] if b.ndim > 1 else 1
    batch = (
        int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])))
        if max(a.ndim, b.ndim) > 2
        else 1
    )
    nthreads = threads.get_num_threads()
    if nthreads == 1 or batch * m * n * k >= SMALL_MACS:
        return np.matmul(a, b, out=out)
    setters = _blas_setters()
    for s in setters:
        s(1)
    try:
        return np.matmul(a, b, out=out)
    finally:
        for s in setters:
            s(nthreads)
