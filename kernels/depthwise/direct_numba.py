"""Direct depthwise convolution compiled with Numba.

Each output row is built tap by tap: ``y[oh, lo:hi] += w[i, j] * x[ih, lo*s+off : ...]``.
For every tap the columns whose input pixel lies inside the image are the contiguous
range ``[lo, hi)``, computed once per tap, so the inner loop has no bounds checks and
vectorises (stride 1); the border columns outside that range read only padding and are
skipped, and rows whose input row is padding are skipped whole. No fastmath: the inner
loop is elementwise (each output accumulates its taps in a fixed order).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from ..memory import check_fits


@njit(cache=True, inline="always")
def _col_range(off, s, w, wo):
    """Output columns ow with 0 <= ow*s + off < w, as [lo, hi)."""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    hi = 0 if w - off <= 0 else (w - off + s - 1) // s
    return min(lo, wo), max(min(hi, wo), min(lo, wo))


@njit(parallel=True, cache=True)
def _forward(x, w, b, y, has_bias, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = y.shape[2], y.shape[3]
    m = o // c
    for p in prange(n * o):  # one (image, output channel) plane per task
        bi = p // o
        oc = p % o
        ic = oc // m
        bias = b[oc] if has_bias else 0.0
        for oh in range(ho):
            yrow = y[bi, oc, oh]
            for ow in range(wo):
                yrow[ow] = bias
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= h:
                    continue  # border row: the whole tap row reads padding
                xrow = x[bi, ic, ih]
                for j in range(kw):
                    off = j * dw - pw
                    lo, hi = _col_range(off, sw, wd, wo)
                    wv = w[oc, 0, i, j]
                    if hi > lo:
                        # zero-based views: indices provably >= 0, so Numba drops the
                        # negative-index wraparound and LLVM vectorises the stride-1 loop
                        if sw == 1:
                            yrow_ = yrow[lo:hi]
                            xrow_ = xrow[lo + off : hi + off]
                            for k in range(hi - lo):
                                yrow_[k] += wv * xrow_[k]
                        else:
                            yrow_ = yrow[lo:hi]
                            xrow_ = xrow[lo * sw + off : (hi - 1) * sw + off + 1 : sw]
                            for k in range(hi - lo):
                                yrow_[k] += wv * xrow_[k]


@njit(parallel=True, cache=True)
def _backward_x(gy, w, gx, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = gx.shape
    o, _, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    m = o // c
    for p in prange(n * c):  # each input plane is written by one task only
        bi = p // c
        ic = p % c
        for ih in range(h):
            for iw in range(wd):
                gx[bi, ic, ih, iw] = 0
        for mm in range(m):
            oc = ic * m + mm
            for oh in range(ho):
                gyrow = gy[bi, oc, oh]
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    gxrow = gx[bi, ic, ih]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = _col_range(off, sw, wd, wo)
                        wv = w[oc, 0, i, j]
                        if hi > lo:
                            # zero-based views: indices provably >= 0, so Numba drops the
                            # negative-index wraparound and LLVM vectorises the stride-1 loop
                            if sw == 1:
                                gyrow_ = gyrow[lo:hi]
                                gxrow_ = gxrow[lo + off : hi + off]
                                for k in range(hi - lo):
                                    gxrow_[k] += wv * gyrow_[k]
                            else:
                                gyrow_ = gyrow[lo:hi]
                                gxrow_ = gxrow[lo * sw + off : (hi - 1) * sw + off + 1 : sw]
                                for k in range(hi - lo):
                                    gxrow_[k] += wv * gyrow_[k]


@njit(parallel=True, cache=True)
def _backward_w(gy, x, gw, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = x.shape
    o, _, kh, kw = gw.shape
    ho, wo = gy.shape[2], gy.shape[3]
    m = o // c
    for oc in prange(o):
        ic = oc // m
        # elementwise accumulators per tap and column, summed at the end: the inner
        # loop vectorises without reassociating a reduction (no fastmath needed)
        acc = np.zeros((kh, kw, wo), dtype=gw.dtype)
        for bi in range(n):
            for oh in range(ho):
                gyrow = gy[bi, oc, oh]
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    xrow = x[bi, ic, ih]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = _col_range(off, sw, wd, wo)
                        a = acc[i, j]
                        if hi > lo:
                            # zero-based views: indices provably >= 0, so Numba drops the
                            # negative-index wraparound and LLVM vectorises the stride-1 loop
                            if sw == 1:
                                a_ = a[lo:hi]
                                gyrow_ = gyrow[lo:hi]
                                xrow_ = xrow[lo + off : hi + off]
                                for k in range(hi - lo):
                                    a_[k] += gyrow_[k] * xrow_[k]
                            else:
                                a_ = a[lo:hi]
                                gyrow_ = gyrow[lo:hi]
                                xrow_ = xrow[lo * sw + off : (hi - 1) * sw + off + 1 : sw]
                                for k in range(hi - lo):
                                    a_[k] += gyrow_[k] * xrow_[k]
        for i in range(kh):
            for j in range(kw):
                s = 0.0
                for ow in range(wo):
                    s += acc[i, j, ow]
                gw[oc, 0, i, j] = s


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    shape = (n, o, ho, wo)
    check_fits("depthwise_conv2d (direct)", {"output": int(np.prod(shape)) * x.itemsize})
    y = np.empty(shape, dtype=x.dtype)
    bb = b if b is not None else np.zeros(1, dtype=x.dtype)
    _forward(x, w, bb, y, b is not None, *stride, *padding, *dilation)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    check_fits(
        "depthwise_conv2d (direct) backward",
        {"input gradient": x.nbytes if need_x else 0, "weight gradient": w.nbytes if need_w else 0},
    )
    gx = gw = None
    if need_x:
        gx = np.empty_like(x)
        _backward_x(gy, w, gx, *stride, *padding, *dilation)
    if need_w:
        gw = np.empty_like(w)
        _backward_w(gy, x, gw, *stride, *padding, *dilation)
    return gx, gw
