"""Adaptive average pooling with Numba: per output pixel, the mean over PyTorch's window
rows floor(i*H/Ho) .. ceil((i+1)*H/Ho) (and columns alike). Global pooling is Ho = Wo = 1.
A task owns an (image, channel) plane."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)


@njit(parallel=True, cache=True)
def _forward(x, y):
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    for bc in prange(n * c):
        b = bc // c
        ch = bc % c
        for oh in range(ho):
            h0 = (oh * h) // ho
            h1 = ((oh + 1) * h + ho - 1) // ho
            for ow in range(wo):
                w0 = (ow * w) // wo
                w1 = ((ow + 1) * w + wo - 1) // wo
                s = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        s += x[b, ch, ih, iw]
                y[b, ch, oh, ow] = s / ((h1 - h0) * (w1 - w0))


@njit(parallel=True, cache=True)
def _backward(gy, gx):
    n, c, h, w = gx.shape
    ho, wo = gy.shape[2], gy.shape[3]
    for bc in prange(n * c):
        b = bc // c
        ch = bc % c
        for ih in range(h):
            for iw in range(w):
                gx[b, ch, ih, iw] = 0
        for oh in range(ho):
            h0 = (oh * h) // ho
            h1 = ((oh + 1) * h + ho - 1) // ho
            for ow in range(wo):
                w0 = (ow * w) // wo
                w1 = ((ow + 1) * w + wo - 1) // wo
                g = gy[b, ch, oh, ow] / ((h1 - h0) * (w1 - w0))
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        gx[b, ch, ih, iw] += g


def forward(x, out_hw):
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    _forward(x, y)
    return y


def backward(gy, x_shape):
    gx = np.empty(x_shape, dtype=gy.dtype)
    _backward(gy, gx)
    return gx
