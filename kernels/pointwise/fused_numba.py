"""The pointwise activations with Numba: one pass each way, in blocks split over threads.

Each element is computed in float64 and rounded once to the array's dtype (as
``reference``). The activation is picked by its kind code inside the element function;
the code is the same for the whole call, so the branch is predicted every time.

No ``fastmath``: the NaN and infinity results depend on comparisons (``x > 0``,
``beta * x > threshold``) and on ``inf * 0`` giving NaN, which ``nnan``/``ninf`` would
fold away, and there is no reduction for ``reassoc`` to help.

Arrays below ``SERIAL`` elements stay on the calling thread (waking the pool costs more
than the pass).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from . import (
    KIND_ELU,
    KIND_GELU,
    KIND_GELU_TANH,
    KIND_HARDSIGMOID,
    KIND_HARDSWISH,
    KIND_LEAKY_RELU,
    KIND_SILU,
    KIND_SOFTPLUS,
)

BLOCK = 4096  # elements per prange iteration
SERIAL = 1 << 15

SQRT1_2 = math.sqrt(0.5)
GELU_PDF = 1.0 / math.sqrt(2.0 * math.pi)
GELU_TANH_BETA = math.sqrt(2.0 / math.pi)
GELU_TANH_KAPPA = 0.044715


@njit(cache=True, inline="always")
def _clamp06(t):
    # NaN stays NaN: both comparisons are false
    if t < 0.0:
        return 0.0
    if t > 6.0:
        return 6.0
    return t


@njit(cache=True)
def _f(kind, v, a, b):
    """f(v) in float64 (PyTorch's formulas; see reference)."""
    if kind == KIND_LEAKY_RELU:
        return v if v > 0.0 else v * a
    if kind == KIND_ELU:
        return v if v > 0.0 else math.expm1(v) * a
    if kind == KIND_GELU:
        return v * 0.5 * (1.0 + math.erf(v * SQRT1_2))
    if kind == KIND_GELU_TANH:
        return 0.5 * v * (1.0 + math.tanh(GELU_TANH_BETA * (v + GELU_TANH_KAPPA * v * v * v)))
    if kind == KIND_SILU:
        return v / (1.0 + math.exp(-v))
    if kind == KIND_HARDSWISH:
        return v * _clamp06(v + 3.0) / 6.0
    if kind == KIND_HARDSIGMOID:
        return _clamp06(v + 3.0) / 6.0
    if kind == KIND_SOFTPLUS:
        return v if v * a > b else math.log1p(math.exp(v * a)) / a
    # KIND_MISH
    return v * math.tanh(math.log1p(math.exp(v)))


@njit(cache=True)
def _df(kind, g, v, a, b):
    """g * f'(v) in float64 (PyTorch's backward formulas; see reference.derivative)."""
    if kind == KIND_LEAKY_RELU:
        return g if v > 0.0 else g * a
    if kind == KIND_ELU:
        return g if v > 0.0 else g * (a * math.exp(v))
    if kind == KIND_GELU:
        cdf = 0.5 * (1.0 + math.erf(v * SQRT1_2))
        return g * (cdf + v * GELU_PDF * math.exp(-0.5 * v * v))
    if kind == KIND_GELU_TANH:
        t = math.tanh(GELU_TANH_BETA * (v + GELU_TANH_KAPPA * v * v * v))
        dt = (1.0 - t * t) * GELU_TANH_BETA * (1.0 + 3.0 * GELU_TANH_KAPPA * v * v)
        return g * (0.5 * (1.0 + t) + 0.5 * v * dt)
    if kind == KIND_SILU:
        s = 1.0 / (1.0 + math.exp(-v))
        return g * (s * (1.0 + v * (1.0 - s)))
    if kind == KIND_HARDSWISH:
        if v <= -3.0:
            return 0.0
        return g if v >= 3.0 else g * (v / 3.0 + 0.5)
    if kind == KIND_HARDSIGMOID:
        return g * (1.0 / 6.0) if v > -3.0 and v < 3.0 else 0.0
    if kind == KIND_SOFTPLUS:
        z = math.exp(v * a)
        return g if v * a > b else g * (z / (z + 1.0))
    # KIND_MISH
    s = 1.0 / (1.0 + math.exp(-v))
    t = math.tanh(math.log1p(math.exp(v)))
    return g * (t + v * s * (1.0 - t * t))


@njit(cache=True)
def _block(kind, src, x, dst, a, b, forward):
    """One block. The piecewise-linear kinds get a loop of their own written with selects
    (both sides computed, no branch on the value's sign), which the compiler vectorises;
    the others call the element functions (their libm calls do not vectorise)."""
    n = src.size
    if kind == KIND_LEAKY_RELU:
        if forward:
            for i in range(n):
                v = np.float64(src[i])
                t = v * a  # computed on both sides: a select, not a branch
                dst[i] = v if v > 0.0 else t
        else:
            for i in range(n):
                g = np.float64(src[i])
                r = g * a
                dst[i] = g if x[i] > 0 else r
    elif kind == KIND_HARDSWISH:
        if forward:
            for i in range(n):
                v = np.float64(src[i])
                t = v + 3.0
                t = 0.0 if t < 0.0 else t  # NaN passes both clamps
                t = 6.0 if t > 6.0 else t
                dst[i] = v * t / 6.0
        else:
            for i in range(n):
                g, v = np.float64(src[i]), np.float64(x[i])
                r = g * (v / 3.0 + 0.5)
                r = g if v >= 3.0 else r
                dst[i] = 0.0 if v <= -3.0 else r
    elif kind == KIND_HARDSIGMOID:
        if forward:
            for i in range(n):
                t = np.float64(src[i]) + 3.0
                t = 0.0 if t < 0.0 else t
                t = 6.0 if t > 6.0 else t
                dst[i] = t / 6.0
        else:
            for i in range(n):
                v = np.float64(x[i])
                r = np.float64(src[i]) * (1.0 / 6.0)
                dst[i] = r if (v > -3.0) & (v < 3.0) else 0.0
    elif forward:
        for i in range(n):
            dst[i] = _f(kind, np.float64(src[i]), a, b)
    else:
        for i in range(n):
            dst[i] = _df(kind, np.float64(src[i]), np.float64(x[i]), a, b)


@njit(parallel=True, cache=True)
def _apply(kind, src, x, dst, a, b, forward):
    """forward: src x, dst y; backward: src g, x read, dst gx."""
    n = src.size
    if n < SERIAL:  # before any prange: a parallel region is entered even for one block
        _block(kind, src, x, dst, a, b, forward)
        return
    for blk in prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(n, lo + BLOCK)
        _block(kind, src[lo:hi], x[lo:hi], dst[lo:hi], a, b, forward)


def _writable(a: np.ndarray) -> np.ndarray:
    # Numba types a read-only array apart and would compile every kernel again for it
    return a if a.flags.writeable else a.copy()


def pointwise_forward(kind: int, x: np.ndarray, a: float, b: float) -> np.ndarray:
    y = np.empty_like(x)
    if x.size:
        flat = _writable(x).reshape(-1)
        _apply(int(kind), flat, flat, y.reshape(-1), float(a), float(b), True)
    return y


def pointwise_backward(kind: int, g: np.ndarray, x: np.ndarray, a: float, b: float) -> np.ndarray:
    gx = np.empty_like(g)
    if g.size:
        g, x = _writable(g).reshape(-1), _writable(x).reshape(-1)
        _apply(int(kind), g, x, gx.reshape(-1), float(a), float(b), False)
    return gx
