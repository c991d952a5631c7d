"""NumPy reference normalisation: textbook formulas over the statistics axes."""

from __future__ import annotations

import numpy as np

BN_BACKWARD_ADDS = True  # bn_backward and bn_relu_backward take acc (see __init__)


def bn_forward_train(x, w, b, eps, normalize_variance):
    if x.shape[0] * x.shape[2] == 0:  # an empty batch: no statistics to take
        return np.empty_like(x), np.zeros(x.shape[1]), np.ones(x.shape[1]), np.zeros(x.shape[1])
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2))
    var = x64.var(axis=(0, 2))
    invstd = 1.0 / np.sqrt(var + eps) if normalize_variance else np.ones_like(var)
    xhat = (x64 - mean[None, :, None]) * invstd[None, :, None]
    y = xhat * w[None, :, None] + b[None, :, None]
    return y.astype(x.dtype), mean, invstd, var


def bn_forward_eval(x, scale, shift):
    return (x * scale[None, :, None] + shift[None, :, None]).astype(x.dtype)


def bn_backward(gy, x, mean, invstd, w, normalize_variance, acc=None):
    m = x.shape[0] * x.shape[2]
    g = gy.astype(np.float64)
    xhat = (x.astype(np.float64) - mean[None, :, None]) * invstd[None, :, None]
    gb = g.sum(axis=(0, 2))
    gw = (g * xhat).sum(axis=(0, 2))
    if normalize_variance:
        gx = (w * invstd)[None, :, None] * (
            g - gb[None, :, None] / m - xhat * gw[None, :, None] / m
        )
    else:
        gx = w[None, :, None] * (g - gb[None, :, None] / m)
    gx = gx.astype(gy.dtype)
    if acc is not None:  # a gradient the tape holds for x already
        gx += acc
    return gx, gw, gb


def row_forward(x, w, b, eps):
    if x.shape[1] == 0:  # empty rows: no statistics to take
        return np.empty_like(x), np.zeros(x.shape[0]), np.ones(x.shape[0])
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1)
    invstd = 1.0 / np.sqrt(x64.var(axis=1) + eps)
    y = (x64 - mean[:, None]) * invstd[:, None]
    if w is not None:
        p = w.shape[0]
        idx = np.arange(x.shape[0]) % p
        y = y * w[idx] + b[idx]
    return y.astype(x.dtype), mean, invstd


def row_backward(gy, x, mean, invstd, w, need_affine):
    r, k = x.shape
    g = gy.astype(np.float64)
    xhat = (x.astype(np.float64) - mean[:, None]) * invstd[:, None]
    gw = gb = None
    if w is not None:
        p = w.shape[0]
        idx = np.arange(r) % p
        if need_affine:
            gw = np.zeros((p, k))
            gb = np.zeros((p, k))
            np.add.at(gw, idx, g * xhat)
            np.add.at(gb, idx, g)
        g = g * w[idx]
    gx = invstd[:, None] * (
        g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)
    )
    return gx.astype(gy.dtype), gw, gb


def bn_relu_forward_train(x, w, b, eps, normalize_variance):
    y, mean, invstd, var = bn_forward_train(x, w, b, eps, normalize_variance)
    mask = (~(y <= 0)).astype(np.uint8)  # PyTorch's ReLU: NaN and -0.0 pass
    return np.where(y < 0, y.dtype.type(0), y), mean, invstd, var, mask


def bn_relu_backward(gy, mask, x, mean, invstd, w, normalize_variance, acc=None):
    g = np.where(mask.astype(bool), gy, gy.dtype.type(0))
    return bn_backward(g, x, mean, invstd, w, normalize_variance, acc)
