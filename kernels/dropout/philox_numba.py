"""Dropout with Numba: Philox words generated in the same pass that applies the mask.

One prange iteration is one Philox block (four elements), so the work split between
threads never changes which word an element gets.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from ..rng import GROUP, LANES, threshold
from ..rng.philox_numba import box_muller, local, philox, words


@njit(parallel=True, cache=True)
def _forward(x, y, keep, s0, s1, k0, k1, thr, scale):
    n = x.size
    full = n // GROUP
    for g in prange(full):  # whole groups: branch-free lanes, vectorised (see rng.local)
        a0, a1, b0, b1, t = local(s0), local(s1), local(k0), local(k1), local(thr)
        lo = g * GROUP
        xs, ys, ks = x[lo : lo + GROUP], y[lo : lo + GROUP], keep[lo : lo + GROUP]
        for j in range(LANES):
            r0, r1, r2, r3 = philox(np.uint64(g * LANES + j), a0, a1, b0, b1)
            m0, m1, m2, m3 = r0 >= t, r1 >= t, r2 >= t, r3 >= t
            ks[j] = m0
            ks[LANES + j] = m1
            ks[2 * LANES + j] = m2
            ks[3 * LANES + j] = m3
            # multiply (not select), as PyTorch does: a dropped NaN stays NaN
            ys[j] = xs[j] * (scale * m0)
            ys[LANES + j] = xs[LANES + j] * (scale * m1)
            ys[2 * LANES + j] = xs[2 * LANES + j] * (scale * m2)
            ys[3 * LANES + j] = xs[3 * LANES + j] * (scale * m3)
    base = full * GROUP
    if base < n:  # the last, partial group
        for j in range(LANES):
            r0, r1, r2, r3 = philox(np.uint64(full * LANES + j), s0, s1, k0, k1)
            rs = (r0, r1, r2, r3)
            for w in range(4):
                i = base + w * LANES + j
                if i < n:
                    m = rs[w] >= thr
                    keep[i] = m
                    y[i] = x[i] * (scale * m)


@njit(parallel=True, cache=True)
def _backward(gy, keep, gx, scale):
    n = gy.size
    for b in prange((n + 4095) // 4096):  # blocks of 4096: views keep the loop vectorised
        lo = b * 4096
        hi = min(n, lo + 4096)
        g, k, o = gy[lo:hi], keep[lo:hi], gx[lo:hi]
        for i in range(hi - lo):
            o[i] = g[i] * (scale * k[i])


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
    for g in prange((n + GROUP - 1) // GROUP):
        base = g * GROUP
        for j in range(LANES):
            r0, r1, r2, r3 = philox(np.uint64(g * LANES + j), s0, s1, k0, k1)
            z0, z1 = box_muller(r0, r1)
            z2, z3 = box_muller(r2, r3)
            zs = (z0, z1, z2, z3)
            for w in range(4):
                i = base + w * LANES + j
                if i < n:
                    y[i] = x[i] * (1.0 + sigma * zs[w])


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
