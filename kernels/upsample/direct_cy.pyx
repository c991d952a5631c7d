"""Upsampling with Cython + OpenMP: the same plane-per-iteration walks as
``direct_numba`` (each thread writes planes of its own; the backward needs no atomics).

Calls below ``SERIAL`` output elements stay on the calling thread.
"""

import numpy as np

cimport openmp
from cython.parallel cimport prange
from libc.stdint cimport int64_t

ctypedef fused real:
    float
    double

cdef enum:
    SERIAL = 65536  # below this many elements: the calling thread alone


cdef inline int _threads(Py_ssize_t n) noexcept:
    return 1 if n < SERIAL else openmp.omp_get_max_threads()


def _nearest(const real[:, :, ::1] src, real[:, :, ::1] dst, const int64_t[::1] ih,
             const int64_t[::1] iw, bint forward):
    cdef Py_ssize_t p = src.shape[0], k, i, j, a, b
    cdef Py_ssize_t ho = ih.shape[0], wo = iw.shape[0]
    cdef Py_ssize_t h = dst.shape[1] if not forward else src.shape[1]
    cdef Py_ssize_t w = dst.shape[2] if not forward else src.shape[2]
    cdef int nt = _threads(dst.size if forward else src.size)
    with nogil:
        for k in prange(p, schedule="static", num_threads=nt):
            if forward:
                for i in range(ho):
                    for j in range(wo):
                        dst[k, i, j] = src[k, ih[i], iw[j]]
            else:
                for a in range(h):
                    for b in range(w):
                        dst[k, a, b] = 0
                for i in range(ho):
                    for j in range(wo):
                        dst[k, ih[i], iw[j]] += src[k, i, j]


def _bilinear(const real[:, :, ::1] src, real[:, :, ::1] dst, const int64_t[::1] h0,
              const int64_t[::1] h1, const real[::1] hl0, const real[::1] hl1,
              const int64_t[::1] w0, const int64_t[::1] w1, const real[::1] wl0,
              const real[::1] wl1, bint forward):
    cdef Py_ssize_t p = src.shape[0], k, i, j, a, b
    cdef Py_ssize_t ho = h0.shape[0], wo = w0.shape[0]
    cdef Py_ssize_t h = dst.shape[1] if not forward else src.shape[1]
    cdef Py_ssize_t w = dst.shape[2] if not forward else src.shape[2]
    cdef int nt = _threads(dst.size if forward else src.size)
    cdef real g
    with nogil:
        for k in prange(p, schedule="static", num_threads=nt):
            if forward:
                for i in range(ho):
                    for j in range(wo):
                        dst[k, i, j] = (
                            hl0[i] * (wl0[j] * src[k, h0[i], w0[j]] + wl1[j] * src[k, h0[i], w1[j]])
                            + hl1[i] * (wl0[j] * src[k, h1[i], w0[j]] + wl1[j] * src[k, h1[i], w1[j]])
                        )
            else:
                for a in range(h):
                    for b in range(w):
                        dst[k, a, b] = 0
                for i in range(ho):
                    for j in range(wo):
                        g = src[k, i, j]
                        dst[k, h0[i], w0[j]] += hl0[i] * wl0[j] * g
                        dst[k, h0[i], w1[j]] += hl0[i] * wl1[j] * g
                        dst[k, h1[i], w0[j]] += hl1[i] * wl0[j] * g
                        dst[k, h1[i], w1[j]] += hl1[i] * wl1[j] * g


def _planes(a):
    return a.reshape(-1, a.shape[2], a.shape[3])


def nearest_forward(x, ih, iw):
    n, c = x.shape[:2]
    y = np.empty((n, c, ih.size, iw.size), x.dtype)
    if y.size:
        _nearest(_planes(x), _planes(y), ih, iw, True)
    return y


def nearest_backward(gy, ih, iw, h, w):
    n, c = gy.shape[:2]
    gx = np.zeros((n, c, h, w), gy.dtype)
    if gy.size:
        _nearest(_planes(gy), _planes(gx), ih, iw, False)
    return gx


def bilinear_forward(x, h0, h1, hl0, hl1, w0, w1, wl0, wl1):
    n, c = x.shape[:2]
    y = np.empty((n, c, h0.size, w0.size), x.dtype)
    if y.size:
        _bilinear(_planes(x), _planes(y), h0, h1, hl0, hl1, w0, w1, wl0, wl1, True)
    return y


def bilinear_backward(gy, h0, h1, hl0, hl1, w0, w1, wl0, wl1, h, w):
    n, c = gy.shape[:2]
    gx = np.zeros((n, c, h, w), gy.dtype)
    if gy.size:
        _bilinear(_planes(gy), _planes(gx), h0, h1, hl0, hl1, w0, w1, wl0, wl1, False)
    return gx
