"""Max pooling with Numba: one pass per output pixel, argmax kept for the backward."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)


@njit(parallel=True, cache=True)
def _forward(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    for bc in prange(n * c):
        b = bc // c
        ch = bc % c
        for oh in range(ho):
            for ow in range(wo):
                best = -np.inf
                arg = -1
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pw + j * dw
                        if iw < 0 or iw >= w:
                            continue
                        v = x[b, ch, ih, iw]
                        if v > best or v != v or arg < 0:  # NaN propagates
                            best = v
                            arg = ih * w + iw
                y[b, ch, oh, ow] = best
                idx[b, ch, oh, ow] = arg


@njit(parallel=True, cache=True)
def _backward(gy, idx, gx):
    n, c, h, w = gx.shape
    ho, wo = gy.shape[2], gy.shape[3]
    for bc in prange(n * c):  # a plane's windows may overlap: one thread per plane
        b = bc // c
        ch = bc % c
        for ih in range(h):
            for iw in range(w):
                gx[b, ch, ih, iw] = 0
        for oh in range(ho):
            for ow in range(wo):
                a = idx[b, ch, oh, ow]
                if a >= 0:
                    gx[b, ch, a // w, a % w] += gy[b, ch, oh, ow]


def forward(x, kernel, stride, padding, dilation, out_hw):
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    idx = np.empty((n, c, *out_hw), dtype=np.int32)
    _forward(x, y, idx, *kernel, *stride, *padding, *dilation)
    return y, idx


def backward(gy, idx, x_shape):
    gx = np.empty(x_shape, dtype=gy.dtype)
    _backward(gy, idx, gx)
    return gx
