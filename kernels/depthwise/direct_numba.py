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
from .._direct_numba import (
    col_range,
    fill_plane,
    gather_axpy,
    gather_mul_acc,
    row_sum,
    run_backward,
    run_forward,
    scatter_axpy,
    tap_index,
)
from ..conv.reference import _out_size


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
                ih = tap_index(oh, sh, ph, i, dh, h)
                if ih < 0:
                    continue  # border row: the whole tap row reads padding
                xrow = x[bi, ic, ih]
                for j in range(kw):
                    off = j * dw - pw
                    lo, hi = col_range(off, sw, wd, wo)
                    wv = w[oc, 0, i, j]
                    gather_axpy(yrow, xrow, wv, lo, hi, off, sw)


@njit(parallel=True, cache=True)
def _backward_x(gy, w, gx, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = gx.shape
    o, _, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    m = o // c
    for p in prange(n * c):  # each input plane is written by one task only
        bi = p // c
        ic = p % c
        fill_plane(gx[bi, ic], 0)
        for mm in range(m):
            oc = ic * m + mm
            for oh in range(ho):
                gyrow = gy[bi, oc, oh]
                for i in range(kh):
                    ih = tap_index(oh, sh, ph, i, dh, h)
                    if ih < 0:
                        continue
                    gxrow = gx[bi, ic, ih]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = col_range(off, sw, wd, wo)
                        wv = w[oc, 0, i, j]
                        scatter_axpy(gxrow, gyrow, wv, lo, hi, off, sw)


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
                    ih = tap_index(oh, sh, ph, i, dh, h)
                    if ih < 0:
                        continue
                    xrow = x[bi, ic, ih]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = col_range(off, sw, wd, wo)
                        a = acc[i, j]
                        gather_mul_acc(a, gyrow, xrow, lo, hi, off, sw)
        for i in range(kh):
            for j in range(kw):
                gw[oc, 0, i, j] = row_sum(acc[i, j])


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(wd, kw, stride[1], padding[1], dilation[1])
    args = (*stride, *padding, *dilation)
    return run_forward("depthwise_conv2d", _forward, x, w, b, (n, o, ho, wo), args)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    args = (*stride, *padding, *dilation)
    return run_backward(
        "depthwise_conv2d", _backward_x, _backward_w, gy, x, w, need_x, need_w, args
    )
