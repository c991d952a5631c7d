"""Direct convolution with Cython + OpenMP: the same loops as ``direct_numba``.

A task owns one image and a block of ``_OB`` output channels; each input row tap is
loaded once per block, and the inner loop over the in-image column range ``[lo, hi)``
runs through raw row pointers with no branches, so the C compiler vectorises it.
"""

import numpy as np

from ..memory import check_fits

cimport openmp
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free


include "../_common.pxi"


cdef enum:
    _OB = 8  # output channels per task


def _forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b, real[:, :,
             :, ::1] y, bint has_bias, int groups, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], og = o // groups
    cdef Py_ssize_t nblk = (og + _OB - 1) // _OB
    cdef Py_ssize_t t, bi, g, o0, o1, oc, oh, ow, cl, ic, i, j, ih, off, lo, hi
    cdef real bias, wv
    cdef real* yrow
    cdef const real* xrow
    cdef int nt = _team(n * o * ho * wo * cg * kh * kw)
    with nogil:
        for t in prange(n * groups * nblk, schedule="static", num_threads=nt):
            bi = t // (groups * nblk)
            g = (t // nblk) % groups
            o0 = g * og + (t % nblk) * _OB
            o1 = o0 + _OB
            if o1 > (g + 1) * og:
                o1 = (g + 1) * og
            for oc in range(o0, o1):
                bias = b[oc] if has_bias else 0
                for oh in range(ho):
                    for ow in range(wo):
                        y[bi, oc, oh, ow] = bias
            for oh in range(ho):
                for cl in range(cg):
                    ic = g * cg + cl
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        xrow = &x[bi, ic, ih, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wo)
                            hi = _hi(off, sw, wd, wo, lo)
                            for oc in range(o0, o1):
                                wv = w[oc, cl, i, j]
                                yrow = &y[bi, oc, oh, 0]
                                if sw == 1:
                                    for ow in range(lo, hi):
                                        yrow[ow] += wv * xrow[ow + off]
                                else:
                                    for ow in range(lo, hi):
                                        yrow[ow] += wv * xrow[ow * sw + off]


def _backward_x(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w, real[:, :, :, ::1] gx,
                int groups, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], wd = gx.shape[3]
    cdef Py_ssize_t o = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], og = o // groups
    cdef Py_ssize_t nblk = (cg + _OB - 1) // _OB
    cdef Py_ssize_t t, bi, g, c0, c1, cl, ih, iw, ol, oc, oh, ow, i, j, off, lo, hi
    cdef real wv
    cdef const real* gyrow
    cdef real* gxrow
    cdef int nt = _team(n * o * ho * wo * cg * kh * kw)
    with nogil:
        for t in prange(n * groups * nblk, schedule="static", num_threads=nt):
            bi = t // (groups * nblk)
            g = (t // nblk) % groups
            c0 = (t % nblk) * _OB
            c1 = c0 + _OB
            if c1 > cg:
                c1 = cg
            for cl in range(c0, c1):
                for ih in range(h):
                    for iw in range(wd):
                        gx[bi, g * cg + cl, ih, iw] = 0
            for ol in range(og):
                oc = g * og + ol
                for oh in range(ho):
                    gyrow = &gy[bi, oc, oh, 0]
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wo)
                            hi = _hi(off, sw, wd, wo, lo)
                            for cl in range(c0, c1):
                                wv = w[oc, cl, i, j]
                                gxrow = &gx[bi, g * cg + cl, ih, 0]
                                if sw == 1:
                                    for ow in range(lo, hi):
                                        gxrow[ow + off] += wv * gyrow[ow]
                                else:
                                    for ow in range(lo, hi):
                                        gxrow[ow * sw + off] += wv * gyrow[ow]


def _backward_w(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x, real[:, :, :, ::1] gw,
                int groups, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = gw.shape[0], cg = gw.shape[1], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], og = o // groups
    cdef Py_ssize_t oc, g, bi, oh, ow, cl, i, j, ih, off, lo, hi, t
    cdef real* acc = NULL
    cdef real* a
    cdef const real* gyrow
    cdef const real* xrow
    cdef real s
    cdef int nt = _team(n * o * ho * wo * cg * kh * kw)
    with nogil, parallel(num_threads=nt):
        # elementwise accumulators per (channel, tap, column), summed at the end
        acc = <real*>calloc(cg * kh * kw * wo + 1, sizeof(real))
        for oc in prange(o, schedule="static"):
            g = oc // og
            for t in range(cg * kh * kw * wo):
                acc[t] = 0
            for bi in range(n):
                for oh in range(ho):
                    gyrow = &gy[bi, oc, oh, 0]
                    for cl in range(cg):
                        for i in range(kh):
                            ih = oh * sh - ph + i * dh
                            if ih < 0 or ih >= h:
                                continue
                            xrow = &x[bi, g * cg + cl, ih, 0]
                            for j in range(kw):
                                off = j * dw - pw
                                lo = _lo(off, sw, wo)
                                hi = _hi(off, sw, wd, wo, lo)
                                a = acc + ((cl * kh + i) * kw + j) * wo
                                for ow in range(lo, hi):
                                    a[ow] += gyrow[ow] * xrow[ow * sw + off]
            for cl in range(cg):
                for i in range(kh):
                    for j in range(kw):
                        a = acc + ((cl * kh + i) * kw + j) * wo
                        s = 0
                        for ow in range(wo):
                            s = s + a[ow]
                        gw[oc, cl, i, j] = s
        free(acc)


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    shape = (n, o, ho, wo)
    check_fits("conv2d (direct)", {"output": int(np.prod(shape)) * x.itemsize})
    y = np.empty(shape, dtype=x.dtype)
    bb = b if b is not None else np.zeros(1, dtype=x.dtype)
    _forward(x, w, bb, y, b is not None, groups, *stride, *padding, *dilation)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    check_fits(
        "conv2d (direct) backward",
        {"input gradient": x.nbytes if need_x else 0, "weight gradient": w.nbytes if need_w else 0},
    )
    gx = gw = None
    if need_x:
        gx = np.empty_like(x)
        _backward_x(gy, w, gx, groups, *stride, *padding, *dilation)
    if need_w:
        gw = np.empty_like(w)
        _backward_w(gy, x, gw, groups, *stride, *padding, *dilation)
    return gx, gw
