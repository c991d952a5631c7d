"""Max pooling with Cython + OpenMP: the same loops as ``max_numba``."""

import numpy as np

cimport openmp
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset


include "../_common.pxi"


def _forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int[:, :, :, ::1] idx,
             int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, b, ch, oh, ow, i, j, ih, iw
    cdef real best, v
    cdef int arg
    cdef bint inside = (ph == 0 and pw == 0 and (ho - 1) * sh + (kh - 1) * dh < h
                        and (wo - 1) * sw + (kw - 1) * dw < w)
    # the raw-pointer paths below skip buffer checks: take them only on consistent shapes
    inside = inside and _same4(y.shape, idx.shape) and y.shape[0] == n and y.shape[1] == c
    if inside and n * c * ho * wo == 0:
        return
    if inside and kh == 2 and kw == 2 and sh == 2 and sw == 2 and dh == 1 and dw == 1:
        _forward_2x2(x, y, idx)
        return
    if inside:
        _forward_inside(x, y, idx, kh, kw, sh, sw, dh, dw)
        return
    nt = _team(n * c * ho * wo * kh * kw)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for oh in range(ho):
                for ow in range(wo):
                    best = -INFINITY
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
                            if v > best or v != v or arg < 0:
                                best = v
                                arg = <int>(ih * w + iw)
                    y[b, ch, oh, ow] = best
                    idx[b, ch, oh, ow] = arg


# Every window inside the input (no padding, no ceil-mode overhang): no bounds checks, the
# first tap seeds the maximum, later taps replace it when strictly greater or NaN - the same
# argmax as the general loop above (first in scan order on ties; a NaN propagates, its
# index the last NaN in scan order, as in PyTorch).
cdef void _forward_inside(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int[:, :, :, ::1] idx,
                          int kh, int kw, int sh, int sw, int dh, int dw) noexcept:
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, oh, ow, i, j, p
    cdef real best, v
    cdef int arg
    cdef const real* xp
    cdef real* yp
    cdef int* ip
    nt = _team(n * c * ho * wo * kh * kw)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            xp = &x[0, 0, 0, 0] + bc * h * w
            yp = &y[0, 0, 0, 0] + bc * ho * wo
            ip = &idx[0, 0, 0, 0] + bc * ho * wo
            for oh in range(ho):
                for ow in range(wo):
                    p = oh * sh * w + ow * sw
                    best = xp[p]
                    arg = <int>p
                    for i in range(kh):
                        for j in range(kw):
                            v = xp[p + i * dh * w + j * dw]
                            if v > best or v != v:
                                best = v
                                arg = <int>(p + i * dh * w + j * dw)
                    yp[oh * wo + ow] = best
                    ip[oh * wo + ow] = arg


# The common 2x2 stride-2 window, fully unrolled (LeNet, VGG).
cdef void _forward_2x2(const real[:, :, :, ::1] x, real[:, :, :, ::1] y,
                       int[:, :, :, ::1] idx) noexcept:
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, oh, ow, p
    cdef real best
    cdef int arg
    cdef const real* xp
    cdef real* yp
    cdef int* ip
    nt = _team(n * c * ho * wo * 4)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            xp = &x[0, 0, 0, 0] + bc * h * w
            yp = &y[0, 0, 0, 0] + bc * ho * wo
            ip = &idx[0, 0, 0, 0] + bc * ho * wo
            for oh in range(ho):
                for ow in range(wo):
                    p = 2 * oh * w + 2 * ow
                    best = xp[p]
                    arg = <int>p
                    if xp[p + 1] > best or xp[p + 1] != xp[p + 1]:
                        best = xp[p + 1]
                        arg = <int>(p + 1)
                    if xp[p + w] > best or xp[p + w] != xp[p + w]:
                        best = xp[p + w]
                        arg = <int>(p + w)
                    if xp[p + w + 1] > best or xp[p + w + 1] != xp[p + w + 1]:
                        best = xp[p + w + 1]
                        arg = <int>(p + w + 1)
                    yp[oh * wo + ow] = best
                    ip[oh * wo + ow] = arg


cdef inline bint _same4(Py_ssize_t* a, Py_ssize_t* b) noexcept:
    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[3] == b[3]


def _backward(const real[:, :, :, ::1] gy, const int[:, :, :, ::1] idx, real[:, :, :, ::1] gx):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t bc, b, ch, oh, ow, ih, iw, k, hw = h * w
    cdef int a
    cdef real* gxp
    cdef const real* gyp
    cdef const int* ip
    if _same4(gy.shape, idx.shape) and gy.shape[0] == n and gy.shape[1] == c:
        if n * c == 0 or hw == 0:
            return
        nt = _team(n * c * hw)
        with nogil:
            for bc in prange(n * c, schedule="static", num_threads=nt):
                # raw plane pointers: a zero-fill plus one indexed add per output
                gxp = &gx[0, 0, 0, 0] + bc * hw
                gyp = &gy[0, 0, 0, 0] + bc * ho * wo
                ip = &idx[0, 0, 0, 0] + bc * ho * wo
                memset(gxp, 0, hw * sizeof(real))
                for k in range(ho * wo):
                    a = ip[k]
                    if a >= 0 and a < hw:
                        gxp[a] += gyp[k]
        return
    nt = _team(n * c * h * w)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
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
