"""Upsampling with Numba: one (n, c) plane per prange iteration, so every thread writes
planes of its own (the backward's sums need no atomics).

Calls below ``SERIAL`` output elements stay on the calling thread (waking the pool costs
more than the pass).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)

SERIAL = 1 << 16


@njit(cache=True, inline="always")
def _nearest_plane(x, y, ih, iw):
    for i in range(ih.size):
        src = x[ih[i]]
        row = y[i]
        for j in range(iw.size):
            row[j] = src[iw[j]]


@njit(cache=True, inline="always")
def _nearest_plane_bwd(gy, gx, ih, iw):
    for a in range(gx.shape[0]):
        for b in range(gx.shape[1]):
            gx[a, b] = 0
    for i in range(ih.size):
        dst = gx[ih[i]]
        row = gy[i]
        for j in range(iw.size):
            dst[iw[j]] += row[j]


@njit(cache=True, inline="always")
def _bilinear_plane(x, y, h0, h1, hl0, hl1, w0, w1, wl0, wl1):
    for i in range(h0.size):
        r0, r1 = x[h0[i]], x[h1[i]]
        a0, a1 = hl0[i], hl1[i]
        row = y[i]
        for j in range(w0.size):
            b0, b1 = wl0[j], wl1[j]
            row[j] = a0 * (b0 * r0[w0[j]] + b1 * r0[w1[j]]) + a1 * (b0 * r1[w0[j]] + b1 * r1[w1[j]])


@njit(cache=True, inline="always")
def _bilinear_plane_bwd(gy, gx, h0, h1, hl0, hl1, w0, w1, wl0, wl1):
    for a in range(gx.shape[0]):
        for b in range(gx.shape[1]):
            gx[a, b] = 0
    for i in range(h0.size):
        d0, d1 = gx[h0[i]], gx[h1[i]]
        a0, a1 = hl0[i], hl1[i]
        row = gy[i]
        for j in range(w0.size):
            g = row[j]
            b0, b1 = wl0[j], wl1[j]
            d0[w0[j]] += a0 * b0 * g
            d0[w1[j]] += a0 * b1 * g
            d1[w0[j]] += a1 * b0 * g
            d1[w1[j]] += a1 * b1 * g


@njit(parallel=True, cache=True)
def _nearest(src, dst, ih, iw, forward):
    """src/dst (P, h, w) planes; forward: x -> y, else gy -> gx."""
    p = src.shape[0]
    big = dst.size if forward else src.size
    if big < SERIAL:  # before any prange: a parallel region is entered even for one plane
        for k in range(p):
            if forward:
                _nearest_plane(src[k], dst[k], ih, iw)
            else:
                _nearest_plane_bwd(src[k], dst[k], ih, iw)
        return
    for k in prange(p):
        if forward:
            _nearest_plane(src[k], dst[k], ih, iw)
        else:
            _nearest_plane_bwd(src[k], dst[k], ih, iw)


@njit(parallel=True, cache=True)
def _bilinear(src, dst, h0, h1, hl0, hl1, w0, w1, wl0, wl1, forward):
    p = src.shape[0]
    big = dst.size if forward else src.size
    if big < SERIAL:
        for k in range(p):
            if forward:
                _bilinear_plane(src[k], dst[k], h0, h1, hl0, hl1, w0, w1, wl0, wl1)
            else:
                _bilinear_plane_bwd(src[k], dst[k], h0, h1, hl0, hl1, w0, w1, wl0, wl1)
        return
    for k in prange(p):
        if forward:
            _bilinear_plane(src[k], dst[k], h0, h1, hl0, hl1, w0, w1, wl0, wl1)
        else:
            _bilinear_plane_bwd(src[k], dst[k], h0, h1, hl0, hl1, w0, w1, wl0, wl1)


def _planes(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[2], a.shape[3])


def nearest_forward(x, ih, iw):
    n, c = x.shape[:2]
    y = np.empty((n, c, ih.size, iw.size), x.dtype)
    if y.size:
        _nearest(_planes(x), _planes(y), ih, iw, True)
    return y


def nearest_backward(gy, ih, iw, h, w):
    n, c = gy.shape[:2]
    gx = np.zeros((n, c, h, w), gy.dtype)
    if gy.size:
        _nearest(_planes(gy), _planes(gx), ih, iw, False)
    return gx


def bilinear_forward(x, h0, h1, hl0, hl1, w0, w1, wl0, wl1):
    n, c = x.shape[:2]
    y = np.empty((n, c, h0.size, w0.size), x.dtype)
    if y.size:
        _bilinear(_planes(x), _planes(y), h0, h1, hl0, hl1, w0, w1, wl0, wl1, True)
    return y


def bilinear_backward(gy, h0, h1, hl0, hl1, w0, w1, wl0, wl1, h, w):
    n, c = gy.shape[:2]
    gx = np.zeros((n, c, h, w), gy.dtype)
    if gy.size:
        _bilinear(_planes(gy), _planes(gx), h0, h1, hl0, hl1, w0, w1, wl0, wl1, False)
    return gx
