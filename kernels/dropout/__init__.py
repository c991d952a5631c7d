"""Dropout kernels: Bernoulli (element- and channel-wise) and Gaussian multiplicative noise.

Randomness comes from Philox-4x32-10 (``kernels.rng``): element ``i`` of a call's stream
depends only on (seed, step, i), so every variant and every thread count gives the same
mask for the same (seed, step). The same module serves the ops ``dropout``,
``dropout2d`` and ``gaussian_dropout``.

Variant interface (arrays C-contiguous float32/float64, validated by ``tapegrad.ops.dropout``)::

    forward(x, seed, step, p, scale) -> (y, keep)
        keep uint8 of x's shape, 1 where Philox word i >= threshold(p) (see kernels.rng);
        y = x * scale where kept, 0 where dropped (scale = 1/(1-p), or 1 unscaled, 0 at p=1).
    backward(gy, keep, scale) -> gx                gx = gy * scale where kept, else 0
    channel_forward(x, seed, step, p, scale) -> (y, keep)
        x (P, S): one draw per row (a channel of N*C), keep (P,) uint8.
    channel_backward(gy, keep, scale) -> gx        gy (P, S), keep (P,)
    gaussian_forward(x, seed, step, sigma) -> y    y = x * (1 + sigma * z), z = rng normal(i)
    gaussian_backward(gy, seed, step, sigma) -> gx same factor, regenerated (nothing stored)
"""

from ..registry import register, set_rule

_P = __name__
for _op in ("dropout", "dropout2d", "gaussian_dropout"):
    register(_op, "reference", f"{_P}.reference")
    register(_op, "philox-numba", f"{_P}.philox_numba")
    register(_op, "philox-cython", f"{_P}.philox_cy")
    # Numba first: it compiles for the host CPU (AVX-512 where present), measured faster
    set_rule(_op, lambda sig: ["philox-numba", "philox-cython"])
