"""Dropout with Cython + OpenMP: the same loops (and Philox streams) as ``philox_numba``."""

import numpy as np

from cython.parallel cimport prange

from tapegrad.kernels.rng import threshold
from tapegrad.kernels.rng.philox_cy import bernoulli_keep, words

include "../rng/philox.pxi"

ctypedef fused real:
    float
    double


cdef inline void _forward_block(real* x, real* y, unsigned char* keep, Py_ssize_t n,
                                Py_ssize_t b, uint32_t s0, uint32_t s1, uint32_t k0,
                                uint32_t k1, uint64_t thr, real scale) noexcept nogil:
    # one Philox block (four elements); the word buffer is private to the calling thread
    cdef uint32_t r[4]
    cdef Py_ssize_t j, i = 4 * b, m = n - 4 * b
    cdef bint k
    philox4x32(b, s0, s1, k0, k1, r)
    if m > 4:
        m = 4
    for j in range(m):
        k = r[j] >= thr
        keep[i + j] = k
        y[i + j] = x[i + j] * scale if k else 0


def _forward(real[::1] x, real[::1] y, unsigned char[::1] keep, uint32_t s0, uint32_t s1,
             uint32_t k0, uint32_t k1, uint64_t thr, real scale):
    cdef Py_ssize_t n = x.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange((n + 3) // 4, schedule="static"):
            _forward_block(&x[0], &y[0], &keep[0], n, b, s0, s1, k0, k1, thr, scale)


def _backward(real[::1] gy, unsigned char[::1] keep, real[::1] gx, real scale):
    cdef Py_ssize_t n = gy.shape[0], b, i, nb = (n + 1023) // 1024, hi
    if n == 0:
        return
    with nogil:
        for b in prange(nb, schedule="static"):
            hi = b * 1024 + 1024
            if hi > n:
                hi = n
            for i in range(b * 1024, hi):
                gx[i] = gy[i] * scale if keep[i] else 0


def _channel(real[:, ::1] x, unsigned char[::1] keep, real[:, ::1] y, real scale):
    cdef Py_ssize_t p = x.shape[0], s = x.shape[1], r, j
    cdef real f
    with nogil:
        for r in prange(p, schedule="static"):
            f = scale if keep[r] else 0
            for j in range(s):
                y[r, j] = x[r, j] * f


cdef inline void _gauss_block(real* x, real* y, Py_ssize_t n, Py_ssize_t b, uint32_t s0,
                              uint32_t s1, uint32_t k0, uint32_t k1,
                              double sigma) noexcept nogil:
    cdef uint32_t r[4]
    cdef double z[4]
    cdef Py_ssize_t j, i = 4 * b
    philox4x32(b, s0, s1, k0, k1, r)
    box_muller(r[0], r[1], z)
    box_muller(r[2], r[3], z + 2)
    for j in range(4):
        if i + j < n:
            y[i + j] = <real>(x[i + j] * (1.0 + sigma * z[j]))


def _gauss(real[::1] x, real[::1] y, uint32_t s0, uint32_t s1, uint32_t k0, uint32_t k1,
           double sigma):
    cdef Py_ssize_t n = x.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange((n + 3) // 4, schedule="static"):
            _gauss_block(&x[0], &y[0], n, b, s0, s1, k0, k1, sigma)


def forward(x, seed, step, p, scale):
    y = np.empty_like(x)
    keep = np.empty(x.shape, dtype=np.uint8)
    _forward(x.reshape(-1), y.reshape(-1), keep.reshape(-1), *words(seed, step),
             threshold(p), scale)
    return y, keep


def backward(gy, keep, scale):
    gx = np.empty_like(gy)
    _backward(gy.reshape(-1), keep.reshape(-1), gx.reshape(-1), scale)
    return gx


def channel_forward(x, seed, step, p, scale):
    keep = bernoulli_keep(seed, step, x.shape[0], p)
    y = np.empty_like(x)
    _channel(x, keep, y, scale)
    return y, keep


def channel_backward(gy, keep, scale):
    gx = np.empty_like(gy)
    _channel(gy, keep, gx, scale)
    return gx


def gaussian_forward(x, seed, step, sigma):
    y = np.empty_like(x)
    _gauss(x.reshape(-1), y.reshape(-1), *words(seed, step), sigma)
    return y


def gaussian_backward(gy, seed, step, sigma):
    return gaussian_forward(gy, seed, step, sigma)
