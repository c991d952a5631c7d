"""Fused epilogues in plain NumPy: the ground truth for the compiled variants."""

from __future__ import annotations

import numpy as np


def _relu_inplace(v: np.ndarray, y: np.ndarray) -> np.ndarray:
    # as PyTorch: NaN and -0.0 pass through; the gradient flows where not v <= 0 (NaN too)
    mask = ~(v <= 0)
    np.copyto(y, np.where(v < 0, v.dtype.type(0), v))
    return mask.view(np.uint8)


def bias_relu_forward(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """y (N, C, *) <- relu(y + b[c]) in place; returns the uint8 mask."""
    v = y if b is None else y + b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return _relu_inplace(v, y)


def masked_backward(
    g: np.ndarray, mask: np.ndarray, channel_sum: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(g where mask else 0, its per-channel sum or None)."""
    gx = np.where(mask.view(bool), g, g.dtype.type(0))
    return gx, (channel_sums(gx) if channel_sum else None)


def channel_sums(g: np.ndarray) -> np.ndarray:
    """C-contiguous ``g`` (N, C, *) summed over every axis but 1, in ``g``'s dtype, as the
    unfused convolution sums its bias gradient: the images added element by element (one
    vector pass), then each channel's row added pairwise (two contiguous reductions, not
    one over strided axes). Every variant's ``masked_backward`` uses it, so the fused
    bias gradient has the unfused one's bits."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in a loop
        if g.ndim < 2 or g.size == 0:
            return g.sum(axis=(0, *range(2, g.ndim)))
        n, c = g.shape[0], g.shape[1]
        per_image = g.reshape(n, -1)
        rows = np.add.reduce(per_image, axis=0) if n > 1 else per_image[0]
        return np.add.reduce(rows.reshape(c, -1), axis=1)


def add_relu_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(relu(a + b), mask)"""
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, as in a loop
        y = a + b
    return y, _relu_inplace(y, y)


def add_forward(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b"""
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, as in a loop
        return a + b
