"""Dropout with Cython + OpenMP: the same streams and arithmetic as ``philox_numba``.

Each prange iteration is one Philox group (256 elements): its words are generated into a
stack buffer (vectorised over the 64 lanes), then applied in a second vectorised loop.
"""

import numpy as np

from cython.parallel cimport prange

from tapegrad.kernels.rng import threshold
from tapegrad.kernels.rng.philox_cy import bernoulli_keep, words

include "../rng/philox.pxi"

ctypedef fused real:
    float
    double


cdef inline void _forward_group(const real* x, real* y, unsigned char* keep, Py_ssize_t n,
                                Py_ssize_t g, uint32_t s0, uint32_t s1, uint32_t k0,
                                uint32_t k1, uint64_t thr, real scale) noexcept nogil:
    cdef uint32_t bits[GROUP]
    cdef Py_ssize_t base = g * GROUP, m = n - g * GROUP
    if m > GROUP:
        m = GROUP
    philox_group(g, s0, s1, k0, k1, bits)
    if real is float:
        tg_keep_apply_f32(bits, thr, x + base, y + base, keep + base, m, scale)
    else:
        tg_keep_apply_f64(bits, thr, x + base, y + base, keep + base, m, scale)


def _forward(const real[::1] x, real[::1] y, unsigned char[::1] keep, uint32_t s0, uint32_t s1,
             uint32_t k0, uint32_t k1, uint64_t thr, real scale):
    cdef Py_ssize_t n = x.shape[0], g
    if n == 0:
        return
    with nogil:
        for g in prange((n + GROUP - 1) // GROUP, schedule="static"):
            _forward_group(&x[0], &y[0], &keep[0], n, g, s0, s1, k0, k1, thr, scale)


cdef inline void _backward_block(const real* gy, const unsigned char* keep, real* gx, Py_ssize_t lo,
                                 Py_ssize_t hi, real scale) noexcept nogil:
    if real is float:
        tg_mask_mul_f32(gy + lo, keep + lo, gx + lo, hi - lo, scale)
    else:
        tg_mask_mul_f64(gy + lo, keep + lo, gx + lo, hi - lo, scale)


def _backward(const real[::1] gy, const unsigned char[::1] keep, real[::1] gx, real scale):
    cdef Py_ssize_t n = gy.shape[0], b, nb = (n + 4095) // 4096, hi
    if n == 0:
        return
    with nogil:
        for b in prange(nb, schedule="static"):
            hi = b * 4096 + 4096
            if hi > n:
                hi = n
            _backward_block(&gy[0], &keep[0], &gx[0], b * 4096, hi, scale)


def _channel(const real[:, ::1] x, const unsigned char[::1] keep, real[:, ::1] y, real scale):
    cdef Py_ssize_t p = x.shape[0], s = x.shape[1], r, j
    cdef real f
    with nogil:
        for r in prange(p, schedule="static"):
            f = scale * keep[r]
            for j in range(s):
                y[r, j] = x[r, j] * f


cdef inline void _gauss_group(const real* x, real* y, Py_ssize_t n, Py_ssize_t g, uint32_t s0,
                              uint32_t s1, uint32_t k0, uint32_t k1,
                              double sigma) noexcept nogil:
    cdef uint32_t bits[GROUP]
    cdef double z[GROUP]
    cdef Py_ssize_t i, base = g * GROUP, m = n - g * GROUP
    if m > GROUP:
        m = GROUP
    normal_group(g, s0, s1, k0, k1, bits, z)
    for i in range(m):
        y[base + i] = <real>(x[base + i] * (1.0 + sigma * z[i]))


def _gauss(const real[::1] x, real[::1] y, uint32_t s0, uint32_t s1, uint32_t k0, uint32_t k1,
           double sigma):
    cdef Py_ssize_t n = x.shape[0], g
    if n == 0:
        return
    with nogil:
        for g in prange((n + GROUP - 1) // GROUP, schedule="static"):
            _gauss_group(&x[0], &y[0], n, g, s0, s1, k0, k1, sigma)


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
