"""NumPy reference average pooling: zero-padded sum over the window taps, divided by the
window's divisor (PyTorch's rule, see ``divisors``)."""

from __future__ import annotations

import numpy as np


def divisors(n: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> np.ndarray:
    """Per output index along one axis: (start, end, size) of the clipped window and the
    count the average divides by. With ``count_include_pad`` the window is clipped to the
    padded input (a ceil_mode window hanging past it counts only the part inside it);
    without, to the input itself."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    padded = end - start
    start_c, end_c = np.maximum(start, 0), np.minimum(end, n)
    return start_c, end_c, padded if count_include_pad else end_c - start_c


def forward(x, kernel, stride, padding, out_hw, count_include_pad):
    n, c, h, w = x.shape
    ho, wo = out_hw
    hs, he, hd = divisors(h, kernel[0], stride[0], padding[0], ho, count_include_pad)
    ws, we, wdv = divisors(w, kernel[1], stride[1], padding[1], wo, count_include_pad)
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            s = x[:, :, hs[i] : he[i], ws[j] : we[j]].sum(axis=(2, 3))
            y[:, :, i, j] = s / (hd[i] * wdv[j])
    return y


def backward(gy, x_shape, kernel, stride, padding, count_include_pad):
    n, c, h, w = x_shape
    ho, wo = gy.shape[2:]
    hs, he, hd = divisors(h, kernel[0], stride[0], padding[0], ho, count_include_pad)
    ws, we, wdv = divisors(w, kernel[1], stride[1], padding[1], wo, count_include_pad)
    gx = np.zeros(x_shape, dtype=gy.dtype)
    for i in range(ho):
        for j in range(wo):
            g = gy[:, :, i, j] / (hd[i] * wdv[j])
            gx[:, :, hs[i] : he[i], ws[j] : we[j]] += g[:, :, None, None]
    return gx
