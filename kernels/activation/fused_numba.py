"""ReLU with Numba: the mask and the output in one pass, in blocks split over threads.

Arrays below ``SERIAL`` elements stay on the calling thread: waking the pool costs more
than a pass over a LeNet-size activation saves.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)

BLOCK = 4096  # elements per prange iteration: views of this size keep the loop vectorised
SERIAL = 1 << 16


@njit(cache=True, inline="always")
def _fwd_block(x, y, mask):
    for i in range(x.size):
        v = x[i]
        # PyTorch's semantics: y = x unless x < 0 (NaN and -0.0 pass through), and the
        # gradient flows unless y <= 0 (it flows through NaN, not through -0.0)
        # a zero of x's dtype: with an int 0 the float32 select went through float64 and
        # came back as +0.0 for -0.0 on the serial path
        mask[i] = not (v <= 0)
        y[i] = x.dtype.type(0) if v < 0 else v


@njit(cache=True, inline="always")
def _bwd_block(g, mask, gx):
    for i in range(g.size):
        gx[i] = g[i] if mask[i] else 0


@njit(parallel=True, cache=True)
def _apply(src, mask, dst, forward):
    """forward: src x, mask and dst y written; backward: src g, mask read, dst gx."""
    n = src.size
    if n < SERIAL:  # before any prange: a parallel region is entered even for one block
        if forward:
            _fwd_block(src, dst, mask)
        else:
            _bwd_block(src, mask, dst)
        return
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo = b * BLOCK
        hi = min(n, lo + BLOCK)
        if forward:
            _fwd_block(src[lo:hi], dst[lo:hi], mask[lo:hi])
        else:
            _bwd_block(src[lo:hi], mask[lo:hi], dst[lo:hi])


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.empty_like(x)
    mask = np.empty(x.shape, np.uint8)
    if x.size:
        _apply(x.reshape(-1), mask.reshape(-1), y.reshape(-1), True)
    return y, mask


def relu_backward(g: np.ndarray, mask: np.ndarray) -> np.ndarray:
    gx = np.empty_like(g)
    if g.size:
        _apply(g.reshape(-1), mask.reshape(-1), gx.reshape(-1), False)
    return gx
