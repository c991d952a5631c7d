"""Philox-4x32-10 in Numba: ``philox`` is the block function the dropout kernels inline.

The ten rounds are written out (not a loop) so that LLVM, after inlining, vectorises a
loop over consecutive blocks (AVX2 ``vpmuludq``: four 32x32->64 products per
instruction); with a rounds loop it keeps one block at a time in scalar registers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from . import GROUP, LANES, key_words, threshold

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)
_S = np.uint64(32)


@njit(inline="always", cache=True)
def _round(c0, c1, c2, c3, ka, kb):
    p0 = _M0 * c0
    p1 = _M1 * c2
    return (p1 >> _S) ^ c1 ^ ka, p1 & _LO, (p0 >> _S) ^ c3 ^ kb, p0 & _LO


@njit(inline="always", cache=True)
def _bump(ka, kb):
    return (ka + _W0) & _LO, (kb + _W1) & _LO


@njit(inline="always", cache=True)
def philox(blk, s0, s1, k0, k1):
    """Words of block ``blk`` (uint64) under step (s0, s1) and key (k0, k1), all uint64."""
    c0, c1, c2, c3 = blk & _LO, blk >> _S, s0, s1
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    return _round(c0, c1, c2, c3, k0, k1)


@njit(inline="always", cache=True)
def box_muller(a, b):
    """Two standard normals from two 32-bit words (uint64)."""
    ua = (np.float64(a) + 0.5) * 2.3283064365386963e-10
    ub = (np.float64(b) + 0.5) * 2.3283064365386963e-10
    r = np.sqrt(-2.0 * np.log(ua))
    t = 6.283185307179586 * ub
    return r * np.cos(t), r * np.sin(t)


@njit(inline="always", cache=True)
def local(v):
    """A fresh SSA copy of a uint64 kernel argument.

    Inside a prange body, arguments are loads that LLVM cannot prove independent of the
    output stores, which blocks vectorisation; local copies plus per-group array views
    (``out[base:base + GROUP]``) let the lane loop vectorise.
    """
    return v | np.uint64(0)


@njit(parallel=True, cache=True)
def _bits(out, s0, s1, k0, k1):
    n = out.size
    full = n // GROUP
    for g in prange(full):  # whole groups: a branch-free loop over lanes (vectorised)
        a0, a1, b0, b1 = local(s0), local(s1), local(k0), local(k1)
        o = out[g * GROUP : g * GROUP + GROUP]
        for j in range(LANES):
            r0, r1, r2, r3 = philox(np.uint64(g * LANES + j), a0, a1, b0, b1)
            o[j] = r0
            o[LANES + j] = r1
            o[2 * LANES + j] = r2
            o[3 * LANES + j] = r3
    base = full * GROUP
    if base < n:  # the last, partial group
        for j in range(LANES):
            r0, r1, r2, r3 = philox(np.uint64(full * LANES + j), s0, s1, k0, k1)
            rs = (r0, r1, r2, r3)
            for w in range(4):
                if base + w * LANES + j < n:
                    out[base + w * LANES + j] = rs[w]


@njit(parallel=True, cache=True)
def _normal(out, s0, s1, k0, k1):
    n = out.size
    for g in prange((n + GROUP - 1) // GROUP):
        base = g * GROUP
        for j in range(LANES):
            r0, r1, r2, r3 = philox(np.uint64(g * LANES + j), s0, s1, k0, k1)
            z0, z1 = box_muller(r0, r1)
            z2, z3 = box_muller(r2, r3)
            zs = (z0, z1, z2, z3)
            for w in range(4):
                if base + w * LANES + j < n:
                    out[base + w * LANES + j] = zs[w]


def words(seed: int, step: int) -> tuple:
    k0, k1, s0, s1 = key_words(seed, step)
    return np.uint64(s0), np.uint64(s1), np.uint64(k0), np.uint64(k1)


def random_bits(seed: int, step: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint32)
    _bits(out, *words(seed, step))
    return out


def bernoulli_keep(seed: int, step: int, n: int, p: float) -> np.ndarray:
    bits = random_bits(seed, step, n)
    return (bits.astype(np.uint64) >= np.uint64(threshold(p))).astype(np.uint8)


def normal(seed: int, step: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.float64)
    _normal(out, *words(seed, step))
    return out
