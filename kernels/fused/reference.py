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
    if not channel_sum:
        return gx, None
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in a loop
        return gx, gx.sum(axis=(0, *range(2, g.ndim)))


def add_relu_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(relu(a + b), mask)"""
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, as in a loop
        y = a + b
    return y, _relu_inplace(y, y)
