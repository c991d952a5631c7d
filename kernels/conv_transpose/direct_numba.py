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
        fill_plane(y[bi, oc], b[oc] if has_bias else 0.0)
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
        fill_plane(gx[bi, ic], 0)
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
                    gw[ic, ocl, i, j] = row_sum(acc[ocl, i, j])


def forward(x, w, b, stride, padding, output_padding, dilation, groups):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    ho = out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], output_padding[1], dilation[1])
    args = (groups, *stride, *padding, *dilation)
    return run_forward("conv_transpose2d", _forward, x, w, b, (n, og * groups, ho, wo), args)


def backward(gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w):
    args = (groups, *stride, *padding, *dilation)
    gx, gw = run_backward(
        "conv_transpose2d", _backward_x, _backward_w, gy, x, w, need_x, need_w, args
    )
    if need_w:
        cropped_nonfinite(gw, x, stride, padding, gy.shape[2:], dilation, groups)
    return gx, gw
