"""Counter-based random numbers: Philox-4x32-10 (Salmon et al., SC'11).

A stream is addressed by ``(seed, step)``. Its elements come in groups of 256: element
``i`` has group ``g = i // 256``, word ``w = (i % 256) // 64`` and lane ``j = i % 64``, and
is word ``w`` of the Philox block ``b = 64 g + j``, whose counter is ``(b low, b high,
step low, step high)`` under the key ``(seed low, seed high)``. Every value therefore
depends only on (seed, step, index): not on thread count, chunking or backend, and a
backward pass can regenerate a forward's randomness instead of storing it. (The lane
layout lets the compilers run 64 consecutive blocks side by side in SIMD registers and
store each word to a contiguous run.)

Variant interface (op ``philox``)::

    random_bits(seed, step, n) -> uint32 (n,)
    bernoulli_keep(seed, step, n, p) -> uint8 (n,)   1 where bits >= threshold(p) (kept)
    normal(seed, step, n) -> float64 (n,)            Box-Muller on word pairs (see below)

``threshold(p) = round(p * 2**32)`` compared as 64-bit, so p=0 keeps everything and p=1
drops everything. Normals: words (0, 1) and (2, 3) of a block are uniform pairs
``u = (bits + 0.5) / 2**32`` in (0, 1); ``r = sqrt(-2 log u_a)`` gives ``r cos(2 pi u_b)``
for the even word and ``r sin(2 pi u_b)`` for the odd one.

Numba and Cython kernels inline the same block function (``philox_numba.philox`` and
``philox.pxi``), so the dropout kernels of both backends draw identical streams.
"""

from ..registry import register, set_rule

_P = __name__
register("philox", "reference", f"{_P}.philox_reference")
register("philox", "philox4x32-numba", f"{_P}.philox_numba")
register("philox", "philox4x32-cython", f"{_P}.philox_cy")
set_rule("philox", lambda sig: ["philox4x32-numba", "philox4x32-cython"])

MASK32 = 0xFFFFFFFF
LANES = 64  # blocks side by side in one group
GROUP = 4 * LANES  # elements per group


def key_words(seed: int, step: int) -> tuple[int, int, int, int]:
    """(k0, k1, s0, s1): the seed and step split into 32-bit words (taken modulo 2**64)."""
    seed &= (1 << 64) - 1
    step &= (1 << 64) - 1
    return seed & MASK32, seed >> 32, step & MASK32, step >> 32


def threshold(p: float) -> int:
    """Drop an element when its 32-bit word is below this (0 <= threshold <= 2**32)."""
    return int(round(float(p) * 4294967296.0))
