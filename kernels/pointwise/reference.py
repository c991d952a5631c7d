"""The pointwise activations in plain NumPy: the ground truth for the compiled variants.

Each activation is PyTorch's formula (``aten/src/ATen/native/cpu/Activation.cpp``), so
NaN and infinities come out where PyTorch puts them. Values are computed in float64 and
rounded once to the input's dtype, as the compiled variants do.

:func:`derivative` is f'(x) for each kind, the formula the backward multiplies by; the
backward also zeroes the gradient outright where PyTorch does (outside Hardsigmoid's
ramp, at and below -3 for Hardswish), even for an infinite or NaN gradient.
"""

from __future__ import annotations

import math

import numpy as np

from . import (
    KIND_ELU,
    KIND_GELU,
    KIND_GELU_TANH,
    KIND_HARDSIGMOID,
    KIND_HARDSWISH,
    KIND_LEAKY_RELU,
    KIND_MISH,
    KIND_SILU,
    KIND_SOFTPLUS,
)

SQRT1_2 = math.sqrt(0.5)
GELU_PDF = 1.0 / math.sqrt(2.0 * math.pi)  # the normal density's constant
GELU_TANH_BETA = math.sqrt(2.0 / math.pi)
GELU_TANH_KAPPA = 0.044715

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _clamp06(t: np.ndarray) -> np.ndarray:
    # clamp to [0, 6] keeping NaN (a comparison with NaN is false: neither bound applies)
    return np.where(t < 0, 0.0, np.where(t > 6, 6.0, t))


def _forward64(kind: int, v: np.ndarray, a: float, b: float) -> np.ndarray:
    if kind == KIND_LEAKY_RELU:
        return np.where(v > 0, v, v * a)
    if kind == KIND_ELU:
        return np.where(v > 0, v, np.expm1(v) * a)
    if kind == KIND_GELU:
        return v * 0.5 * (1.0 + _erf(v * SQRT1_2))
    if kind == KIND_GELU_TANH:
        return 0.5 * v * (1.0 + np.tanh(GELU_TANH_BETA * (v + GELU_TANH_KAPPA * v * v * v)))
    if kind == KIND_SILU:
        return v / (1.0 + np.exp(-v))
    if kind == KIND_HARDSWISH:
        return v * _clamp06(v + 3.0) / 6.0
    if kind == KIND_HARDSIGMOID:
        return _clamp06(v + 3.0) / 6.0
    if kind == KIND_SOFTPLUS:
        return np.where(v * a > b, v, np.log1p(np.exp(v * a)) / a)
    if kind == KIND_MISH:
        return v * np.tanh(np.log1p(np.exp(v)))
    raise ValueError(f"pointwise: unknown kind {kind}")


def derivative(kind: int, x: np.ndarray, a: float = 0.0, b: float = 0.0) -> np.ndarray:
    """f'(x) of activation ``kind`` with parameters ``a``, ``b``, in float64 (PyTorch's
    backward formulas; at a kink, the side PyTorch takes)."""
    v = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        if kind == KIND_LEAKY_RELU:
            return np.where(v > 0, 1.0, a)
        if kind == KIND_ELU:
            return np.where(v > 0, 1.0, a * np.exp(v))  # NaN: NaN
        if kind == KIND_GELU:
            cdf = 0.5 * (1.0 + _erf(v * SQRT1_2))
            return cdf + v * GELU_PDF * np.exp(-0.5 * v * v)
        if kind == KIND_GELU_TANH:
            t = np.tanh(GELU_TANH_BETA * (v + GELU_TANH_KAPPA * v * v * v))
            dt = (1.0 - t * t) * GELU_TANH_BETA * (1.0 + 3.0 * GELU_TANH_KAPPA * v * v)
            return 0.5 * (1.0 + t) + 0.5 * v * dt
        if kind == KIND_SILU:
            s = 1.0 / (1.0 + np.exp(-v))
            return s * (1.0 + v * (1.0 - s))
        if kind == KIND_HARDSWISH:
            return np.where(v <= -3, 0.0, np.where(v >= 3, 1.0, v / 3.0 + 0.5))  # NaN: NaN
        if kind == KIND_HARDSIGMOID:
            return np.where((v > -3) & (v < 3), 1.0 / 6.0, 0.0)
        if kind == KIND_SOFTPLUS:
            z = np.exp(v * a)
            return np.where(v * a > b, 1.0, z / (z + 1.0))
        if kind == KIND_MISH:
            s = 1.0 / (1.0 + np.exp(-v))
            t = np.tanh(np.log1p(np.exp(v)))
            return t + v * s * (1.0 - t * t)
    raise ValueError(f"pointwise: unknown kind {kind}")


def pointwise_forward(kind: int, x: np.ndarray, a: float, b: float) -> np.ndarray:
    with np.errstate(all="ignore"):
        return _forward64(kind, x.astype(np.float64), a, b).astype(x.dtype)


def pointwise_backward(kind: int, g: np.ndarray, x: np.ndarray, a: float, b: float) -> np.ndarray:
    v = x.astype(np.float64)
    with np.errstate(all="ignore"):
        gx = g.astype(np.float64) * derivative(kind, v, a, b)
        # where PyTorch returns a literal zero rather than g * 0 (NaN/inf gradients stay out)
        if kind == KIND_HARDSWISH:
            gx = np.where(v <= -3, 0.0, gx)
        elif kind == KIND_HARDSIGMOID:
            gx = np.where((v > -3) & (v < 3), gx, 0.0)
    return gx.astype(g.dtype)
