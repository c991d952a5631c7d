"""NumPy reference dropout: masks from the NumPy Philox, then plain array arithmetic."""

from __future__ import annotations

import numpy as np

from ..rng import philox_reference as rng


def _factor(keep, scale, dtype):
    # kept: scale, dropped: 0; multiplied in (as PyTorch does), so a dropped NaN stays NaN
    return keep.astype(dtype) * dtype.type(scale)


def forward(x, seed, step, p, scale):
    keep = rng.bernoulli_keep(seed, step, x.size, p).reshape(x.shape)
    return x * _factor(keep, scale, x.dtype), keep


def backward(gy, keep, scale):
    return gy * _factor(keep, scale, gy.dtype)


def channel_forward(x, seed, step, p, scale):
    keep = rng.bernoulli_keep(seed, step, x.shape[0], p)
    return x * _factor(keep, scale, x.dtype)[:, None], keep


def channel_backward(gy, keep, scale):
    return gy * _factor(keep, scale, gy.dtype)[:, None]


def gaussian_forward(x, seed, step, sigma):
    # the product is formed in float64 and rounded once, as the compiled kernels do
    factor = 1.0 + sigma * rng.normal(seed, step, x.size).reshape(x.shape)
    return (x.astype(np.float64) * factor).astype(x.dtype)


def gaussian_backward(gy, seed, step, sigma):
    return gaussian_forward(gy, seed, step, sigma)
