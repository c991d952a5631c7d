"""NumPy Philox-4x32-10: vectorised over blocks with 64-bit products. Ground truth."""

from __future__ import annotations

import numpy as np

from . import GROUP, LANES, key_words, threshold

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
LO = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)


def philox_blocks(c0, c1, c2, c3, k0: int, k1: int) -> np.ndarray:
    """Ten Philox rounds on counter arrays (uint64 holding 32-bit words) -> (4, nblocks)."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & LO for c in (c0, c1, c2, c3))
    for r in range(10):
        ka = np.uint64((k0 + r * W0) & 0xFFFFFFFF)
        kb = np.uint64((k1 + r * W1) & 0xFFFFFFFF)
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = (
            (p1 >> S32) ^ c1 ^ ka,
            p1 & LO,
            (p0 >> S32) ^ c3 ^ kb,
            p0 & LO,
        )
    return np.stack([c0, c1, c2, c3])


def _words(seed: int, step: int, n: int) -> np.ndarray:
    """(groups, 4, LANES) words: [g, w, j] is word w of block g * LANES + j."""
    k0, k1, s0, s1 = key_words(seed, step)
    ng = (n + GROUP - 1) // GROUP
    blk = np.arange(ng * LANES, dtype=np.uint64)
    out = philox_blocks(blk & LO, blk >> S32, np.full(blk.size, s0), np.full(blk.size, s1), k0, k1)
    return out.reshape(4, ng, LANES).transpose(1, 0, 2)


def random_bits(seed: int, step: int, n: int) -> np.ndarray:
    return _words(seed, step, n).reshape(-1)[:n].astype(np.uint32)


def bernoulli_keep(seed: int, step: int, n: int, p: float) -> np.ndarray:
    bits = random_bits(seed, step, n).astype(np.uint64)
    return (bits >= np.uint64(threshold(p))).astype(np.uint8)


def normal(seed: int, step: int, n: int) -> np.ndarray:
    u = (_words(seed, step, n).astype(np.float64) + 0.5) * (1.0 / 4294967296.0)
    out = np.empty(u.shape)
    for a, b in ((0, 1), (2, 3)):  # Box-Muller on the word pairs of each block
        r = np.sqrt(-2.0 * np.log(u[:, a]))
        theta = 2.0 * np.pi * u[:, b]
        out[:, a] = r * np.cos(theta)
        out[:, b] = r * np.sin(theta)
    return out.reshape(-1)[:n]
