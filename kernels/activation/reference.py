"""ReLU in plain NumPy: the ground truth for the compiled variants."""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = x > 0
    return np.where(mask, x, x.dtype.type(0)), mask.view(np.uint8)


def relu_backward(g: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask.view(bool), g, g.dtype.type(0))
