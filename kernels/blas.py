"""GEMMs through NumPy's BLAS with the thread count scaled to the work.

Waking a second thread for a small product costs more than it saves, and on a machine
shared with other processes the wait for a descheduled worker made small products many
times slower (benchmarks/results/threads-policy.md). Products below ``SMALL_MACS``
multiply-adds run on one BLAS thread.

Larger ones, at more than one thread, are split into blocks of rows or columns run on
tapegrad's own OpenMP team, each thread calling NumPy's BLAS single-threaded on its block
(:func:`team_split`: 2-D float32/float64 operands, plain or transposed, and stacks of them).
The team's idle threads sleep; OpenBLAS's own worker threads, after every call that wakes
them, keep spinning on the cores for a long while, and the convolution, pooling and
normalisation kernels that run next then share their cores with those spinners. Where the
split does not apply (other layouts or dtypes, no usable ``cblas_?gemm``, no Cython
kernels), the product runs on ``np.matmul`` at ``tapegrad.set_num_threads``'s count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import cblas, threads

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
        math.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])) if max(a.ndim, b.ndim) > 2 else 1
    )
    nthreads = threads.get_num_threads()
    if nthreads == 1:
        return np.matmul(a, b, out=out)
    if batch * m * n * k >= SMALL_MACS:
        done = team_split(a, b, out, nthreads)
        return done if done is not None else np.matmul(a, b, out=out)
    return one_thread_matmul(a, b, out, nthreads)


def one_thread_matmul(
    a: np.ndarray, b: np.ndarray, out: np.ndarray | None, nthreads: int
) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` with NumPy's BLAS held at one thread for the call and
    set back to ``nthreads`` after it."""
    setters = _blas_setters()
    for s in setters:
        s(1)
    try:
        return np.matmul(a, b, out=out)
    finally:
        for s in setters:
            s(nthreads)


_team: dict[str, object] = {}


def _team_gemm():
    if "mod" not in _team:
        try:
            _team["mod"] = threads.import_extension("tapegrad.kernels.team_gemm_cy")
        except ImportError:
            _team["mod"] = None
    return _team["mod"]


def _layout(x: np.ndarray) -> tuple[bool, int] | None:
    """(transposed, leading dimension in elements) of a 2-D operand BLAS can read in place."""
    item = x.itemsize
    rows, cols = x.shape
    s0, s1 = x.strides
    if s1 == item and s0 % item == 0 and s0 >= max(cols, 1) * item:
        return False, s0 // item
    if s0 == item and s1 % item == 0 and s1 >= max(rows, 1) * item:
        return True, s1 // item
    return None


def team_split(
    a: np.ndarray, b: np.ndarray, out: np.ndarray | None, nthreads: int
) -> np.ndarray | None:
    """``a @ b`` split over ``nthreads`` threads of tapegrad's OpenMP team, or None when the
    operands do not fit the split (the caller then uses ``np.matmul``).

    Fits: ``a`` (M, K) and ``b`` (K, N), or stacks (B, M, K) and (B, K, N), of one dtype,
    float32 or float64, each matrix with unit stride along its rows or its columns
    (C-ordered or transposed views); ``out`` None or C-contiguous of the result's shape and
    dtype, not overlapping ``a`` or ``b``. Each thread runs NumPy's BLAS on one thread over
    its block of rows or columns.
    """
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64) or a.ndim != b.ndim:
        return None
    if a.ndim == 3:
        if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
            return None
        shape = (a.shape[0], a.shape[1], b.shape[2])
    elif a.ndim == 2:
        if a.shape[1] != b.shape[0]:
            return None
        shape = (a.shape[0], b.shape[1])
    else:
        return None
    if out is not None and (
        out.shape != shape or out.dtype != a.dtype or not out.flags.c_contiguous
    ):
        return None
    if 0 in shape or a.shape[-1] == 0:
        return None
    if out is not None and (np.may_share_memory(out, a) or np.may_share_memory(out, b)):
        return None  # the blocks would read what other blocks already wrote
    fn = cblas.gemm_address(a.dtype)
    mod = _team_gemm() if fn is not None else None
    if mod is None:
        return None
    mats = [(a, b)] if a.ndim == 2 else list(zip(a, b))
    layouts = [(_layout(x), _layout(y)) for x, y in mats]
    if any(la is None or lb is None for la, lb in layouts):
        return None
    c = np.empty(shape, a.dtype) if out is None else out
    cs = [c] if c.ndim == 2 else list(c)
    m, k = a.shape[-2:]
    n = b.shape[-1]
    dbl = a.dtype == np.float64
    with cblas.single_threaded():
        for (x, y), (la, lb), z in zip(mats, layouts, cs):
            mod.gemm(
                fn, dbl, la[0], lb[0], m, n, k, x.ctypes.data, la[1], y.ctypes.data, lb[1],
                z.ctypes.data, n, nthreads,
            )  # fmt: skip
    return c
