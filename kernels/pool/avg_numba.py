"""Average pooling with Numba: one pass per output pixel over its clipped window.

The divisor follows PyTorch: with count_include_pad the window clipped to the padded
input, else the number of input pixels inside it. A task owns an (image, channel) plane,
so the backward's overlapping windows never race.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)


@njit(cache=True, inline="always")
def _window(o, s, p, k, n, count_include_pad):
    start = o * s - p
    end = min(start + k, n + p)
    size = end - start
    start_c = max(start, 0)
    end_c = min(end, n)
    return start_c, end_c, size if count_include_pad else end_c - start_c


@njit(parallel=True, cache=True)
def _forward(x, y, kh, kw, sh, sw, ph, pw, cip):
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    for bc in prange(n * c):
        b = bc // c
        ch = bc % c
        for oh in range(ho):
            h0, h1, hd = _window(oh, sh, ph, kh, h, cip)
            for ow in range(wo):
                w0, w1, wd = _window(ow, sw, pw, kw, w, cip)
                s = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        s += x[b, ch, ih, iw]
                y[b, ch, oh, ow] = s / (hd * wd)


@njit(parallel=True, cache=True)
def _backward(gy, gx, kh, kw, sh, sw, ph, pw, cip):
    n, c, h, w = gx.shape
    ho, wo = gy.shape[2], gy.shape[3]
    for bc in prange(n * c):
        b = bc // c
        ch = bc % c
        for ih in range(h):
            for iw in range(w):
                gx[b, ch, ih, iw] = 0
        for oh in range(ho):
            h0, h1, hd = _window(oh, sh, ph, kh, h, cip)
            for ow in range(wo):
                w0, w1, wd = _window(ow, sw, pw, kw, w, cip)
                g = gy[b, ch, oh, ow] / (hd * wd)
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        gx[b, ch, ih, iw] += g


def forward(x, kernel, stride, padding, out_hw, count_include_pad):
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    _forward(x, y, *kernel, *stride, *padding, bool(count_include_pad))
    return y


def backward(gy, x_shape, kernel, stride, padding, count_include_pad):
    gx = np.empty(x_shape, dtype=gy.dtype)
    _backward(gy, gx, *kernel, *stride, *padding, bool(count_include_pad))
    return gx
