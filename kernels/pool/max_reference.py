"""NumPy reference max pooling: loops over the window taps, keeps the running maximum.

As PyTorch: the first maximum in scan order on ties, a window's NaN propagates (its index
the last NaN in scan order), and a window of -inf points at its first pixel."""

from __future__ import annotations

import numpy as np


def forward(x, kernel, stride, padding, dilation, out_hw):
    n, c, h, w = x.shape
    ho, wo = out_hw
    best = np.full((n, c, ho, wo), -np.inf, dtype=x.dtype)
    idx = np.full((n, c, ho, wo), -1, dtype=np.int32)
    oh = np.arange(ho)[:, None]
    ow = np.arange(wo)[None, :]
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            ih = oh * stride[0] - padding[0] + i * dilation[0]
            iw = ow * stride[1] - padding[1] + j * dilation[1]
            valid = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
            vals = x[:, :, np.clip(ih, 0, h - 1), np.clip(iw, 0, w - 1)]
            vals = np.where(valid, vals, -np.inf)
            better = (vals > best) | np.isnan(vals) | (valid & (idx < 0))
            best = np.where(better, vals, best)
            idx = np.where(better, (ih * w + iw).astype(np.int32), idx)
    return best.astype(x.dtype), idx


def backward(gy, idx, x_shape):
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h * w), dtype=gy.dtype)
    flat = idx.reshape(n * c, idx.shape[2] * idx.shape[3])  # -1 fails on an empty batch
    rows = np.repeat(np.arange(n * c), flat.shape[1]).reshape(flat.shape)
    ok = flat >= 0
    np.add.at(gx, (rows[ok], flat[ok]), gy.reshape(flat.shape)[ok])
    return gx.reshape(x_shape)
