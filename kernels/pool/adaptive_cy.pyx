"""Adaptive average pooling with Cython + OpenMP: the same loops as ``adaptive_numba``."""

import numpy as np

cimport openmp
from cython.parallel cimport prange


include "../_common.pxi"


def _forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef int nt = 0
    cdef Py_ssize_t bc, b, ch, oh, ow, ih, iw, h0, h1, w0, w1
    cdef double s
    nt = _team(n * c * (h * w + ho * wo))
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for oh in range(ho):
                h0 = (oh * h) // ho
                h1 = ((oh + 1) * h + ho - 1) // ho
                for ow in range(wo):
                    w0 = (ow * w) // wo
                    w1 = ((ow + 1) * w + wo - 1) // wo
                    s = 0
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            s = s + x[b, ch, ih, iw]
                    y[b, ch, oh, ow] = <real>(s / ((h1 - h0) * (w1 - w0)))


def _backward(const real[:, :, :, ::1] gy, real[:, :, :, ::1] gx):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef int nt = 0
    cdef Py_ssize_t bc, b, ch, oh, ow, ih, iw, h0, h1, w0, w1
    cdef real g
    nt = _team(n * c * (h * w + ho * wo))
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for ih in range(h):
                for iw in range(w):
                    gx[b, ch, ih, iw] = 0
            for oh in range(ho):
                h0 = (oh * h) // ho
                h1 = ((oh + 1) * h + ho - 1) // ho
                for ow in range(wo):
                    w0 = (ow * w) // wo
                    w1 = ((ow + 1) * w + wo - 1) // wo
                    g = gy[b, ch, oh, ow] / ((h1 - h0) * (w1 - w0))
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            gx[b, ch, ih, iw] += g


def forward(x, out_hw):
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    _forward(x, y)
    return y


def backward(gy, x_shape):
    gx = np.empty(x_shape, dtype=gy.dtype)
    _backward(gy, gx)
    return gx
