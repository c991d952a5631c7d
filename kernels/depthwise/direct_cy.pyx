"""Direct depthwise convolution with Cython + OpenMP: the same loops as ``direct_numba``.

Per tap, the output columns that read inside the image form one range ``[lo, hi)``;
the inner loop runs over it through raw row pointers with no checks, so the C compiler
vectorises it (stride 1). Rows and columns outside read padding only and are skipped.
"""

import numpy as np

cimport openmp
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free


# Below this many multiply-adds a call runs on the calling thread only (as in the conv2d
# and pooling kernels): a sub-millisecond loop gains little from a second thread, and
# on a loaded machine each parallel region can wait a scheduler slice for a member.
cdef enum:
    _GRAIN = 1 << 21


cdef inline int _team(Py_ssize_t work) noexcept nogil:
    return 1 if work < _GRAIN else openmp.omp_get_max_threads()


ctypedef fused real:
    float
    double


# Output columns ow with 0 <= ow*s + off < w form [lo, hi). Two functions returning values
# (not one writing through pointers) so the prange loops see lo/hi assigned and make them
# thread-private.
cdef inline Py_ssize_t _lo(Py_ssize_t off, Py_ssize_t s, Py_ssize_t wo) noexcept nogil:
    cdef Py_ssize_t a = 0
    if off < 0:
        a = (-off + s - 1) // s
    return a if a < wo else wo


cdef inline Py_ssize_t _hi(Py_ssize_t off, Py_ssize_t s, Py_ssize_t w, Py_ssize_t wo,
                           Py_ssize_t lo) noexcept nogil:
    cdef Py_ssize_t z = 0
    if w - off > 0:
        z = (w - off + s - 1) // s
    if z > wo:
        z = wo
    return z if z > lo else lo


def _forward(real[:, :, :, ::1] x, real[:, :, :, ::1] w, real[::1] b, real[:, :, :, ::1] y,
             bint has_bias, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], m = o // c
    cdef Py_ssize_t p, bi, oc, ic, oh, ow, i, j, ih, off, lo, hi
    cdef real bias, wv
    cdef real* yrow
    cdef real* xrow
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil:
        for p in prange(n * o, schedule="static", num_threads=nt):
            bi = p // o
            oc = p % o
            ic = oc // m
            bias = b[oc] if has_bias else 0
            for oh in range(ho):
                yrow = &y[bi, oc, oh, 0]
                for ow in range(wo):
                    yrow[ow] = bias
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    xrow = &x[bi, ic, ih, 0]
                    for j in range(kw):
                        off = j * dw - pw
                        lo = _lo(off, sw, wo)
                        hi = _hi(off, sw, wd, wo, lo)
                        wv = w[oc, 0, i, j]
                        if sw == 1:
                            for ow in range(lo, hi):
                                yrow[ow] += wv * xrow[ow + off]
                        else:
                            for ow in range(lo, hi):
                                yrow[ow] += wv * xrow[ow * sw + off]


def _backward_x(real[:, :, :, ::1] gy, real[:, :, :, ::1] w, real[:, :, :, ::1] gx,
                int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], wd = gx.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t p, bi, ic, mm, oc, oh, ow, i, j, ih, iw, off, lo, hi
    cdef real wv
    cdef real* gyrow
    cdef real* gxrow
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil:
        for p in prange(n * c, schedule="static", num_threads=nt):
            bi = p // c
            ic = p % c
            for ih in range(h):
                for iw in range(wd):
                    gx[bi, ic, ih, iw] = 0
            for mm in range(m):
                oc = ic * m + mm
                for oh in range(ho):
                    gyrow = &gy[bi, oc, oh, 0]
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        gxrow = &gx[bi, ic, ih, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wo)
                            hi = _hi(off, sw, wd, wo, lo)
                            wv = w[oc, 0, i, j]
                            if sw == 1:
                                for ow in range(lo, hi):
                                    gxrow[ow + off] += wv * gyrow[ow]
                            else:
                                for ow in range(lo, hi):
                                    gxrow[ow * sw + off] += wv * gyrow[ow]


def _backward_w(real[:, :, :, ::1] gy, real[:, :, :, ::1] x, real[:, :, :, ::1] gw,
                int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = gw.shape[0], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t oc, ic, bi, oh, ow, i, j, ih, off, lo, hi, t
    cdef real* acc = NULL
    cdef real* a
    cdef real* gyrow
    cdef real* xrow
    cdef real s
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil, parallel(num_threads=nt):
        # elementwise accumulators per tap and column, summed at the end: the inner
        # loop vectorises without reassociating a reduction
        acc = <real*>calloc(kh * kw * wo + 1, sizeof(real))
        for oc in prange(o, schedule="static"):
            ic = oc // m
            for t in range(kh * kw * wo):
                acc[t] = 0
            for bi in range(n):
                for oh in range(ho):
                    gyrow = &gy[bi, oc, oh, 0]
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        xrow = &x[bi, ic, ih, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wo)
                            hi = _hi(off, sw, wd, wo, lo)
                            a = acc + (i * kw + j) * wo
                            for ow in range(lo, hi):
                                a[ow] += gyrow[ow] * xrow[ow * sw + off]
            for i in range(kh):
                for j in range(kw):
                    s = 0
                    a = acc + (i * kw + j) * wo
                    for ow in range(wo):
                        s = s + a[ow]
                    gw[oc, 0, i, j] = s
        free(acc)


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    bb = b if b is not None else np.zeros(1, dtype=x.dtype)
    _forward(x, w, bb, y, b is not None, *stride, *padding, *dilation)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    gx = gw = None
    if need_x:
        gx = np.empty_like(x)
        _backward_x(gy, w, gx, *stride, *padding, *dilation)
    if need_w:
        gw = np.empty_like(w)
        _backward_w(gy, x, gw, *stride, *padding, *dilation)
    return gx, gw
