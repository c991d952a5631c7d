"""Max pooling with Cython + OpenMP: the same loops as ``max_numba``."""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport INFINITY

ctypedef fused real:
    float
    double


def _forward(real[:, :, :, ::1] x, real[:, :, :, ::1] y, int[:, :, :, ::1] idx,
             int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, b, ch, oh, ow, i, j, ih, iw
    cdef real best, v
    cdef int arg
    with nogil:
        for bc in prange(n * c, schedule="static"):
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
                            if v > best or arg < 0:
                                best = v
                                arg = <int>(ih * w + iw)
                    y[b, ch, oh, ow] = best
                    idx[b, ch, oh, ow] = arg


def _backward(real[:, :, :, ::1] gy, int[:, :, :, ::1] idx, real[:, :, :, ::1] gx):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t bc, b, ch, oh, ow, ih, iw
    cdef int a
    with nogil:
        for bc in prange(n * c, schedule="static"):
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
