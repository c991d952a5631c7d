"""Fused epilogues with Numba: one pass each way, split over threads.

Calls below ``SERIAL`` elements stay on the calling thread: waking the pool costs more
than the pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from .reference import channel_sums

SERIAL = 1 << 16
BLOCK = 4096  # elements per prange iteration of the flat passes


@njit(cache=True, inline="always")
def _relu_row(y, mask, bias, has_bias):
    zero = y.dtype.type(0)
    for t in range(y.size):
        # with no bias the value is y itself: adding +0.0 would turn -0.0 into +0.0
        u = y[t] + bias if has_bias else y[t]
        mask[t] = not (u <= 0)
        y[t] = zero if u < 0 else u


@njit(parallel=True, cache=True)
def _bias_relu(y3, b, mask3, has_bias):
    n, c, s = y3.shape
    rows = n * c
    if rows * s < SERIAL:
        for r in range(rows):
            i, j = r // c, r % c
            _relu_row(y3[i, j], mask3[i, j], b[j if has_bias else 0], has_bias)
        return
    for r in prange(rows):
        i, j = r // c, r % c
        _relu_row(y3[i, j], mask3[i, j], b[j if has_bias else 0], has_bias)


@njit(cache=True, inline="always")
def _mask_row(g, mask, gx):
    zero = gx.dtype.type(0)
    for t in range(g.size):
        gx[t] = g[t] if mask[t] else zero


@njit(parallel=True, cache=True)
def _masked_flat(g, mask, gx):
    n = g.size
    if n < SERIAL:
        _mask_row(g, mask, gx)
        return
    for blk in prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(n, lo + BLOCK)
        _mask_row(g[lo:hi], mask[lo:hi], gx[lo:hi])


@njit(cache=True, inline="always")
def _add_relu_row(a, b, y, mask):
    zero = y.dtype.type(0)
    for t in range(a.size):
        u = a[t] + b[t]
        mask[t] = not (u <= 0)
        y[t] = zero if u < 0 else u


@njit(parallel=True, cache=True)
def _add_relu(a, b, y, mask):
    n = a.size
    if n < SERIAL:
        _add_relu_row(a, b, y, mask)
        return
    for blk in prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(n, lo + BLOCK)
        _add_relu_row(a[lo:hi], b[lo:hi], y[lo:hi], mask[lo:hi])


@njit(cache=True, inline="always")
def _add_row(a, b, y):
    for t in range(a.size):
        y[t] = a[t] + b[t]


@njit(parallel=True, cache=True)
def _add(a, b, y):
    n = a.size
    if n < SERIAL:
        _add_row(a, b, y)
        return
    for blk in prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(n, lo + BLOCK)
        _add_row(a[lo:hi], b[lo:hi], y[lo:hi])


def _rows(a: np.ndarray) -> np.ndarray:
    """(N, C, S) view of an (N, C, *) array (a 1-D array is one row per element)."""
    if a.ndim == 1:
        return a.reshape(1, a.shape[0], 1)
    return a.reshape(a.shape[0], a.shape[1], -1)


def bias_relu_forward(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """y (N, C, *) <- relu(y + b[c]) in place; returns the uint8 mask."""
    mask = np.empty(y.shape, np.uint8)
    if y.size:
        bias = np.zeros(1, y.dtype) if b is None else b
        _bias_relu(_rows(y), bias, _rows(mask), b is not None)
    return mask


def masked_backward(
    g: np.ndarray, mask: np.ndarray, channel_sum: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(g where mask else 0, its per-channel sum or None)."""
    gx = np.empty_like(g)
    if g.size:
        _masked_flat(g.reshape(-1), mask.reshape(-1), gx.reshape(-1))
    return gx, (channel_sums(gx) if channel_sum else None)


def add_relu_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(relu(a + b), mask)"""
    y = np.empty_like(a)
    mask = np.empty(a.shape, np.uint8)
    if a.size:
        _add_relu(a.reshape(-1), b.reshape(-1), y.reshape(-1), mask.reshape(-1))
    return y, mask


def add_forward(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b"""
    y = np.empty_like(a)
    if a.size:
        _add(a.reshape(-1), b.reshape(-1), y.reshape(-1))
    return y
