"""Dropout with Numba: Philox words generated in the same pass that applies the mask.

One prange iteration is one Philox block (four elements), so the work split between
threads never changes which word an element gets.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..rng import threshold
from ..rng.philox_numba import box_muller, philox, words


@njit(parallel=True, cache=True)
def _forward(x, y, keep, s0, s1, k0, k1, thr, scale):
    n = x.size
    nfull = n // 4
    for b in prange(nfull):
        r0, r1, r2, r3 = philox(np.uint64(b), s0, s1, k0, k1)
        i = 4 * b
        m0, m1, m2, m3 = r0 >= thr, r1 >= thr, r2 >= thr, r3 >= thr
        keep[i] = m0
        keep[i + 1] = m1
        keep[i + 2] = m2
        keep[i + 3] = m3
        y[i] = x[i] * scale if m0 else 0
        y[i + 1] = x[i + 1] * scale if m1 else 0
        y[i + 2] = x[i + 2] * scale if m2 else 0
        y[i + 3] = x[i + 3] * scale if m3 else 0
    if nfull * 4 < n:
        r0, r1, r2, r3 = philox(np.uint64(nfull), s0, s1, k0, k1)
        rs = (r0, r1, r2, r3)
        for j in range(n - nfull * 4):
            i = nfull * 4 + j
            m = rs[j] >= thr
            keep[i] = m
            y[i] = x[i] * scale if m else 0


@njit(parallel=True, cache=True)
def _backward(gy, keep, gx, scale):
    n = gy.size
    nb = (n + 1023) // 1024
    for b in prange(nb):  # blocks of 1024 so the inner loop vectorises
        for i in range(b * 1024, min(n, b * 1024 + 1024)):
            gx[i] = gy[i] * scale if keep[i] else 0


@njit(parallel=True, cache=True)
def _channel(x, keep, y, scale):
    p, s = x.shape
    for r in prange(p):
        f = scale if keep[r] else 0
        for j in range(s):
            y[r, j] = x[r, j] * f


@njit(parallel=True, cache=True)
def _gauss(x, y, s0, s1, k0, k1, sigma):
    n = x.size
    for b in prange((n + 3) // 4):
        r0, r1, r2, r3 = philox(np.uint64(b), s0, s1, k0, k1)
        z0, z1 = box_muller(r0, r1)
        z2, z3 = box_muller(r2, r3)
        zs = (z0, z1, z2, z3)
        i = 4 * b
        for j in range(min(4, n - i)):
            y[i + j] = x[i + j] * (1.0 + sigma * zs[j])


def forward(x, seed, step, p, scale):
    y = np.empty_like(x)
    keep = np.empty(x.shape, dtype=np.uint8)
    _forward(
        x.reshape(-1), y.reshape(-1), keep.reshape(-1), *words(seed, step),
        np.uint64(threshold(p)), x.dtype.type(scale),
    )  # fmt: skip
    return y, keep


def backward(gy, keep, scale):
    gx = np.empty_like(gy)
    _backward(gy.reshape(-1), keep.reshape(-1), gx.reshape(-1), gy.dtype.type(scale))
    return gx


def channel_forward(x, seed, step, p, scale):
    from ..rng.philox_numba import bernoulli_keep

    keep = bernoulli_keep(seed, step, x.shape[0], p)
    y = np.empty_like(x)
    _channel(x, keep, y, x.dtype.type(scale))
    return y, keep


def channel_backward(gy, keep, scale):
    gx = np.empty_like(gy)
    _channel(gy, keep, gx, gy.dtype.type(scale))
    return gx


def gaussian_forward(x, seed, step, sigma):
    y = np.empty_like(x)
    _gauss(x.reshape(-1), y.reshape(-1), *words(seed, step), float(sigma))
    return y


def gaussian_backward(gy, seed, step, sigma):
    return gaussian_forward(gy, seed, step, sigma)
