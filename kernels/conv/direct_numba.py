"""Direct convolution compiled with Numba: loops over output pixels, no column buffer.

Forward: a task owns one image and a block of ``_OB`` output channels of one group. For
every output row, each input row tap ``xrow`` is loaded once and reused for the whole
block: ``y[o, oh, lo:hi] += w[o, c, i, j] * xrow[lo*s+off : ...]`` for o in the block.
Per tap the columns reading inside the image form one range ``[lo, hi)`` (computed, not
tested per pixel), so the inner loop over output columns has no branches and vectorises
(stride 1). Input gradient: the same scatter written the other way round, a task per
(image, input channel). Weight gradient: a task per output channel, elementwise
accumulators per (channel, tap, column) summed at the end. No fastmath anywhere: every
inner loop is elementwise, so vectorising it needs no reassociation.
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
from .reference import _out_size

_OB = 8  # output channels per task: one input row load feeds _OB output rows


@njit(parallel=True, cache=True)
def _forward(x, w, b, y, has_bias, groups, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = y.shape[2], y.shape[3]
    og = o // groups
    nblk = (og + _OB - 1) // _OB
    for t in prange(n * groups * nblk):
        bi = t // (groups * nblk)
        g = (t // nblk) % groups
        o0 = g * og + (t % nblk) * _OB
        o1 = min(o0 + _OB, (g + 1) * og)
        for oc in range(o0, o1):
            fill_plane(y[bi, oc], b[oc] if has_bias else 0.0)
        for oh in range(ho):
            for cl in range(cg):
                ic = g * cg + cl
                for i in range(kh):
                    ih = tap_index(oh, sh, ph, i, dh, h)
                    if ih < 0:
                        continue
                    xrow = x[bi, ic, ih]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = col_range(off, sw, wd, wo)
                        for oc in range(o0, o1):
                            wv = w[oc, cl, i, j]
                            yrow = y[bi, oc, oh]
                            gather_axpy(yrow, xrow, wv, lo, hi, off, sw)


@njit(parallel=True, cache=True)
def _backward_x(gy, w, gx, groups, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = gx.shape
    o, cg, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    og = o // groups
    nblk = (cg + _OB - 1) // _OB
    for t in prange(n * groups * nblk):  # a task owns a block of input planes of one image
        bi = t // (groups * nblk)
        g = (t // nblk) % groups
        c0 = (t % nblk) * _OB
        c1 = min(c0 + _OB, cg)
        for cl in range(c0, c1):
            fill_plane(gx[bi, g * cg + cl], 0)
        for ol in range(og):
            oc = g * og + ol
            for oh in range(ho):
                gyrow = gy[bi, oc, oh]
                for i in range(kh):
                    ih = tap_index(oh, sh, ph, i, dh, h)
                    if ih < 0:
                        continue
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = col_range(off, sw, wd, wo)
                        for cl in range(c0, c1):
                            wv = w[oc, cl, i, j]
                            gxrow = gx[bi, g * cg + cl, ih]
                            scatter_axpy(gxrow, gyrow, wv, lo, hi, off, sw)


@njit(parallel=True, cache=True)
def _backward_w(gy, x, gw, groups, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = x.shape
    o, cg, kh, kw = gw.shape
    ho, wo = gy.shape[2], gy.shape[3]
    og = o // groups
    for oc in prange(o):
        g = oc // og
        acc = np.zeros((cg, kh, kw, wo), dtype=gw.dtype)
        for bi in range(n):
            for oh in range(ho):
                gyrow = gy[bi, oc, oh]
                for cl in range(cg):
                    for i in range(kh):
                        ih = tap_index(oh, sh, ph, i, dh, h)
                        if ih < 0:
                            continue
                        xrow = x[bi, g * cg + cl, ih]
                        for j in range(kw):
                            off = j * dw - pw
                            lo, hi = col_range(off, sw, wd, wo)
                            a = acc[cl, i, j]
                            gather_mul_acc(a, gyrow, xrow, lo, hi, off, sw)
        for cl in range(cg):
            for i in range(kh):
                for j in range(kw):
                    gw[oc, cl, i, j] = row_sum(acc[cl, i, j])


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(wd, kw, stride[1], padding[1], dilation[1])
    args = (groups, *stride, *padding, *dilation)
    return run_forward("conv2d", _forward, x, w, b, (n, o, ho, wo), args)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    args = (groups, *stride, *padding, *dilation)
    return run_backward("conv2d", _backward_x, _backward_w, gy, x, w, need_x, need_w, args)
