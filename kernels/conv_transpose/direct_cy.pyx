"""Direct transposed convolution with Cython + OpenMP: the same loops as ``direct_numba``.

Each input pixel scatters its weighted filter; per tap the input columns whose target is
inside the output form one range ``[lo, hi)``, walked through raw row pointers.
"""

import numpy as np

from ..memory import check_fits

from .reference import cropped_nonfinite

cimport openmp
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free

include "../_common.pxi"


def _forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b, real[:, :,
             :, ::1] y, bint has_bias, int groups, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t og = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3], cg = c // groups
    cdef Py_ssize_t p, bi, oc, g, ocl, cl, ic, ih, iw, oh, ow, i, j, off, lo, hi
    cdef real bias, wv
    cdef real* yrow
    cdef const real* xrow
    cdef int nt = _team(n * c * h * wd * og * kh * kw)
    with nogil:
        for p in prange(n * o, schedule="static", num_threads=nt):
            bi = p // o
            oc = p % o
            g = oc // og
            ocl = oc % og
            bias = b[oc] if has_bias else 0
            for oh in range(ho):
                for ow in range(wo):
                    y[bi, oc, oh, ow] = bias
            for cl in range(cg):
                ic = g * cg + cl
                for ih in range(h):
                    xrow = &x[bi, ic, ih, 0]
                    for i in range(kh):
                        oh = ih * sh - ph + i * dh
                        if oh < 0 or oh >= ho:
                            continue
                        yrow = &y[bi, oc, oh, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wd)
                            hi = _hi(off, sw, wo, wd, lo)
                            wv = w[ic, ocl, i, j]
                            for iw in range(lo, hi):
                                yrow[iw * sw + off] += wv * xrow[iw]


def _backward_x(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w, real[:, :, :, ::1] gx,
                int groups, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], wd = gx.shape[3]
    cdef Py_ssize_t og = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], cg = c // groups
    cdef Py_ssize_t p, bi, ic, g, ocl, oc, ih, iw, oh, i, j, off, lo, hi
    cdef real wv
    cdef real* gxrow
    cdef const real* gyrow
    cdef int nt = _team(n * c * h * wd * og * kh * kw)
    with nogil:
        for p in prange(n * c, schedule="static", num_threads=nt):
            bi = p // c
            ic = p % c
            g = ic // cg
            for ih in range(h):
                for iw in range(wd):
                    gx[bi, ic, ih, iw] = 0
            for ocl in range(og):
                oc = g * og + ocl
                for ih in range(h):
                    gxrow = &gx[bi, ic, ih, 0]
                    for i in range(kh):
                        oh = ih * sh - ph + i * dh
                        if oh < 0 or oh >= ho:
                            continue
                        gyrow = &gy[bi, oc, oh, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wd)
                            hi = _hi(off, sw, wo, wd, lo)
                            wv = w[ic, ocl, i, j]
                            for iw in range(lo, hi):
                                gxrow[iw] += wv * gyrow[iw * sw + off]


def _backward_w(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x, real[:, :, :, ::1] gw,
                int groups, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t og = gw.shape[1], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], cg = c // groups
    cdef Py_ssize_t ic, g, bi, ocl, oc, ih, iw, oh, i, j, off, lo, hi, t
    cdef real* acc = NULL
    cdef real* a
    cdef const real* xrow
    cdef const real* gyrow
    cdef real s
    cdef int nt = _team(n * c * h * wd * og * kh * kw)
    with nogil, parallel(num_threads=nt):
        # elementwise accumulators, summed at the end (no reassociated reduction)
        acc = <real*>calloc(og * kh * kw * wd + 1, sizeof(real))
        for ic in prange(c, schedule="static"):
            g = ic // cg
            for t in range(og * kh * kw * wd):
                acc[t] = 0
            for bi in range(n):
                for ocl in range(og):
                    oc = g * og + ocl
                    for ih in range(h):
                        xrow = &x[bi, ic, ih, 0]
                        for i in range(kh):
                            oh = ih * sh - ph + i * dh
                            if oh < 0 or oh >= ho:
                                continue
                            gyrow = &gy[bi, oc, oh, 0]
                            for j in range(kw):
                                off = j * dw - pw
                                lo = _lo(off, sw, wd)
                                hi = _hi(off, sw, wo, wd, lo)
                                a = acc + ((ocl * kh + i) * kw + j) * wd
                                for iw in range(lo, hi):
                                    a[iw] += xrow[iw] * gyrow[iw * sw + off]
            for ocl in range(og):
                for i in range(kh):
                    for j in range(kw):
                        a = acc + ((ocl * kh + i) * kw + j) * wd
                        s = 0
                        for iw in range(wd):
                            s = s + a[iw]
                        gw[ic, ocl, i, j] = s
        free(acc)


def forward(x, w, b, stride, padding, output_padding, dilation, groups):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    ho = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    wo = (wd - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
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
