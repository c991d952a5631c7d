"""NumPy reference dropout: masks from the NumPy Philox, then plain array arithmetic."""

from __future__ import annotations

import numpy as np

from ..rng import philox_reference as rng


def forward(x, seed, step, p, scale):
    keep = rng.bernoulli_keep(seed, step, x.size, p).reshape(x.shape)
    y = np.where(keep.astype(bool), x * x.dtype.type(scale), x.dtype.type(0))
    return y, keep


def backward(gy, keep, scale):
    return np.where(keep.astype(bool), gy * gy.dtype.type(scale), gy.dtype.type(0))


def channel_forward(x, seed, step, p, scale):
    keep = rng.bernoulli_keep(seed, step, x.shape[0], p)
    y = np.where(keep.astype(bool)[:, None], x * x.dtype.type(scale), x.dtype.type(0))
    return y, keep


def channel_backward(gy, keep, scale):
    return np.where(keep.astype(bool)[:, None], gy * gy.dtype.type(scale), gy.dtype.type(0))


def gaussian_forward(x, seed, step, sigma):
    # the product is formed in float64 and rounded once, as the compiled kernels do
    factor = 1.0 + sigma * rng.normal(seed, step, x.size).reshape(x.shape)
    return (x.astype(np.float64) * factor).astype(x.dtype)


def gaussian_backward(gy, seed, step, sigma):
    return gaussian_forward(gy, seed, step, sigma)
