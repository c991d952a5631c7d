"""Philox-4x32-10 in Numba: ``philox`` is the block function the dropout kernels inline."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import key_words, threshold

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)
_S = np.uint64(32)


@njit(inline="always", cache=True)
def philox(blk, s0, s1, k0, k1):
    """Words of block ``blk`` (uint64) under step (s0, s1) and key (k0, k1), all uint64."""
    c0 = blk & _LO
    c1 = blk >> _S
    c2 = s0
    c3 = s1
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        n0 = (p1 >> _S) ^ c1 ^ k0
        n2 = (p0 >> _S) ^ c3 ^ k1
        c1 = p1 & _LO
        c3 = p0 & _LO
        c0 = n0
        c2 = n2
        k0 = (k0 + _W0) & _LO
        k1 = (k1 + _W1) & _LO
    return c0, c1, c2, c3


@njit(inline="always", cache=True)
def box_muller(a, b):
    """Two standard normals from two 32-bit words (uint64)."""
    ua = (np.float64(a) + 0.5) * 2.3283064365386963e-10
    ub = (np.float64(b) + 0.5) * 2.3283064365386963e-10
    r = np.sqrt(-2.0 * np.log(ua))
    t = 6.283185307179586 * ub
    return r * np.cos(t), r * np.sin(t)


@njit(parallel=True, cache=True)
def _bits(out, s0, s1, k0, k1):
    n = out.size
    for b in prange((n + 3) // 4):
        r0, r1, r2, r3 = philox(np.uint64(b), s0, s1, k0, k1)
        i = 4 * b
        out[i] = r0
        if i + 1 < n:
            out[i + 1] = r1
        if i + 2 < n:
            out[i + 2] = r2
        if i + 3 < n:
            out[i + 3] = r3


@njit(parallel=True, cache=True)
def _normal(out, s0, s1, k0, k1):
    n = out.size
    for b in prange((n + 3) // 4):
        r0, r1, r2, r3 = philox(np.uint64(b), s0, s1, k0, k1)
        z0, z1 = box_muller(r0, r1)
        z2, z3 = box_muller(r2, r3)
        i = 4 * b
        out[i] = z0
        if i + 1 < n:
            out[i + 1] = z1
        if i + 2 < n:
            out[i + 2] = z2
        if i + 3 < n:
            out[i + 3] = z3


@njit(parallel=True, cache=True)
def _keep(out, s0, s1, k0, k1, thr):
    n = out.size
    for b in prange((n + 3) // 4):
        r0, r1, r2, r3 = philox(np.uint64(b), s0, s1, k0, k1)
        i = 4 * b
        out[i] = r0 >= thr
        if i + 1 < n:
            out[i + 1] = r1 >= thr
        if i + 2 < n:
            out[i + 2] = r2 >= thr
        if i + 3 < n:
            out[i + 3] = r3 >= thr


def words(seed: int, step: int) -> tuple:
    k0, k1, s0, s1 = key_words(seed, step)
    return np.uint64(s0), np.uint64(s1), np.uint64(k0), np.uint64(k1)


def random_bits(seed: int, step: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint32)
    _bits(out, *words(seed, step))
    return out


def bernoulli_keep(seed: int, step: int, n: int, p: float) -> np.ndarray:
    out = np.empty(n, dtype=np.uint8)
    _keep(out, *words(seed, step), np.uint64(threshold(p)))
    return out


def normal(seed: int, step: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.float64)
    _normal(out, *words(seed, step))
    return out
