"""ReLU in plain NumPy: the ground truth for the compiled variants."""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # as PyTorch: NaN and -0.0 pass through; the gradient flows where not y <= 0 (NaN too)
    mask = ~(x <= 0)
    return np.where(x < 0, x.dtype.type(0), x), mask.view(np.uint8)


def relu_backward(g: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask.view(bool), g, g.dtype.type(0))
