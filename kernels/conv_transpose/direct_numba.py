"""Direct transposed convolution with Numba: each input pixel scatters its weighted filter.

For input row ``ih`` and tap ``(i, j)`` the pixels land on output row
``ih*sh - ph + i*dh`` at columns ``iw*sw + j*dw - pw``; the input columns whose target lies
inside the output form one range ``[lo, hi)`` computed per tap, so the inner loop has no
bounds checks. Each task owns one output plane (forward) or one input plane (input
gradient), so the scatter-adds never race. No fastmath: the inner loops are elementwise.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from .._direct_numba import col_range, gather_axpy, gather_mul_acc, scatter_axpy, tap_index
from ..memory import check_fits
from .reference import cropped_nonfinite, out_size


@njit(parallel=True, cache=True)
def _forward(x, w, b, y, has_bias, groups, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    o, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    cg = c // groups
    for p in prange(n * o):  # one (image, output channel) plane per task
        bi = p // o
        oc = p % o
        g = oc // og
        ocl = oc % og
        bias = b[oc] if has_bias else 0.0
        for oh in range(ho):
            for ow in range(wo):
                y[bi, oc, oh, ow] = bias
        for cl in range(cg):
            ic = g * cg + cl
            for ih in range(h):
                xrow = x[bi, ic, ih]
                for i in range(kh):
                    oh = tap_index(ih, sh, ph, i, dh, ho)
                    if oh < 0:
                        continue
                    yrow = y[bi, oc, oh]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = col_range(off, sw, wo, wd)
                        wv = w[ic, ocl, i, j]
                        scatter_axpy(yrow, xrow, wv, lo, hi, off, sw)


@njit(parallel=True, cache=True)
def _backward_x(gy, w, gx, groups, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = gx.shape
    _, og, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    cg = c // groups
    for p in prange(n * c):  # one input plane per task: gather from the output gradient
        bi = p // c
        ic = p % c
        g = ic // cg
        for ih in range(h):
            for iw in range(wd):
                gx[bi, ic, ih, iw] = 0
        for ocl in range(og):
            oc = g * og + ocl
            for ih in range(h):
                gxrow = gx[bi, ic, ih]
                for i in range(kh):
                    oh = tap_index(ih, sh, ph, i, dh, ho)
                    if oh < 0:
                        continue
                    gyrow = gy[bi, oc, oh]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = col_range(off, sw, wo, wd)
                        wv = w[ic, ocl, i, j]
                        gather_axpy(gxrow, gyrow, wv, lo, hi, off, sw)


@njit(parallel=True, cache=True)
def _backward_w(gy, x, gw, groups, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = x.shape
    _, og, kh, kw = gw.shape
    ho, wo = gy.shape[2], gy.shape[3]
    cg = c // groups
    for ic in prange(c):
        g = ic // cg
        # elementwise accumulators (one per output channel, tap and input column), summed
        # at the end: vectorises without reassociating a reduction (no fastmath)
        acc = np.zeros((og, kh, kw, wd), dtype=gw.dtype)
        for bi in range(n):
            for ocl in range(og):
                oc = g * og + ocl
                for ih in range(h):
                    xrow = x[bi, ic, ih]
                    for i in range(kh):
                        oh = tap_index(ih, sh, ph, i, dh, ho)
                        if oh < 0:
                            continue
                        gyrow = gy[bi, oc, oh]
                        for j in range(kw):
                            off = j * dw - pw
                            lo, hi = col_range(off, sw, wo, wd)
                            a = acc[ocl, i, j]
                            gather_mul_acc(a, xrow, gyrow, lo, hi, off, sw)
        for ocl in range(og):
            for i in range(kh):
                for j in range(kw):
                    s = 0.0
                    for iw in range(wd):
                        s += acc[ocl, i, j, iw]
                    gw[ic, ocl, i, j] = s


def forward(x, w, b, stride, padding, output_padding, dilation, groups):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    ho = out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], output_padding[1], dilation[1])
    shape = (n, og * groups, ho, wo)
    check_fits("conv_transpose2d (direct)", {"output": int(np.prod(shape)) * x.itemsize})
    y = np.empty(shape, dtype=x.dtype)
    bb = b if b is not None else np.zeros(1, dtype=x.dtype)
    _forward(x, w, bb, y, b is not None, groups, *stride, *padding, *dilation)
    return y


def backward(gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w):
    check_fits(
        "conv_transpose2d (direct) backward",
        {"input gradient": x.nbytes if need_x else 0, "weight gradient": w.nbytes if need_w else 0},
    )
    gx = gw = None
    if need_x:
        gx = np.empty_like(x)
        _backward_x(gy, w, gx, groups, *stride, *padding, *dilation)
    if need_w:
        gw = np.empty_like(w)
        _backward_w(gy, x, gw, groups, *stride, *padding, *dilation)
        cropped_nonfinite(gw, x, stride, padding, gy.shape[2:], dilation, groups)
    return gx, gw
