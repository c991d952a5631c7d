"""NumPy reference adaptive average pooling: output pixel (i, j) averages input rows
floor(i*H/Ho) .. ceil((i+1)*H/Ho) and the same for columns (PyTorch's windows)."""

from __future__ import annotations

import numpy as np


def windows(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(out)
    return (i * n) // out, -((-(i + 1) * n) // out)


def forward(x, out_hw):
    n, c, h, w = x.shape
    ho, wo = out_hw
    hs, he = windows(h, ho)
    ws, we = windows(w, wo)
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = x[:, :, hs[i] : he[i], ws[j] : we[j]].mean(axis=(2, 3))
    return y


def backward(gy, x_shape):
    n, c, h, w = x_shape
    ho, wo = gy.shape[2:]
    hs, he = windows(h, ho)
    ws, we = windows(w, wo)
    gx = np.zeros(x_shape, dtype=gy.dtype)
    for i in range(ho):
        for j in range(wo):
            size = (he[i] - hs[i]) * (we[j] - ws[j])
            gx[:, :, hs[i] : he[i], ws[j] : we[j]] += (gy[:, :, i, j] / size)[:, :, None, None]
    return gx
