"""Philox-4x32-10 with Cython + OpenMP: the same streams as ``philox_numba``."""

import numpy as np

from cython.parallel cimport prange

from tapegrad.kernels.rng import key_words, threshold

include "philox.pxi"


# One block per call: the word buffers live on the calling thread's stack (a C array
# declared in the function that runs prange would be shared between the threads).
cdef inline void _bits_block(uint32_t* out, Py_ssize_t n, Py_ssize_t b, uint32_t s0,
                             uint32_t s1, uint32_t k0, uint32_t k1) noexcept nogil:
    cdef uint32_t r[4]
    cdef Py_ssize_t j, i = 4 * b
    philox4x32(b, s0, s1, k0, k1, r)
    for j in range(4):
        if i + j < n:
            out[i + j] = r[j]


cdef inline void _normal_block(double* out, Py_ssize_t n, Py_ssize_t b, uint32_t s0,
                               uint32_t s1, uint32_t k0, uint32_t k1) noexcept nogil:
    cdef uint32_t r[4]
    cdef double z[4]
    cdef Py_ssize_t j, i = 4 * b
    philox4x32(b, s0, s1, k0, k1, r)
    box_muller(r[0], r[1], z)
    box_muller(r[2], r[3], z + 2)
    for j in range(4):
        if i + j < n:
            out[i + j] = z[j]


cdef inline void _keep_block(unsigned char* out, Py_ssize_t n, Py_ssize_t b, uint32_t s0,
                             uint32_t s1, uint32_t k0, uint32_t k1,
                             uint64_t thr) noexcept nogil:
    cdef uint32_t r[4]
    cdef Py_ssize_t j, i = 4 * b
    philox4x32(b, s0, s1, k0, k1, r)
    for j in range(4):
        if i + j < n:
            out[i + j] = r[j] >= thr


def _bits(uint32_t[::1] out, uint32_t s0, uint32_t s1, uint32_t k0, uint32_t k1):
    cdef Py_ssize_t n = out.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange((n + 3) // 4, schedule="static"):
            _bits_block(&out[0], n, b, s0, s1, k0, k1)


def _normal(double[::1] out, uint32_t s0, uint32_t s1, uint32_t k0, uint32_t k1):
    cdef Py_ssize_t n = out.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange((n + 3) // 4, schedule="static"):
            _normal_block(&out[0], n, b, s0, s1, k0, k1)


def _keep(unsigned char[::1] out, uint32_t s0, uint32_t s1, uint32_t k0, uint32_t k1,
          uint64_t thr):
    cdef Py_ssize_t n = out.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange((n + 3) // 4, schedule="static"):
            _keep_block(&out[0], n, b, s0, s1, k0, k1, thr)


def words(seed, step):
    k0, k1, s0, s1 = key_words(seed, step)
    return s0, s1, k0, k1


def random_bits(seed, step, n):
    out = np.empty(n, dtype=np.uint32)
    _bits(out, *words(seed, step))
    return out


def bernoulli_keep(seed, step, n, p):
    out = np.empty(n, dtype=np.uint8)
    _keep(out, *words(seed, step), threshold(p))
    return out


def normal(seed, step, n):
    out = np.empty(n, dtype=np.float64)
    _normal(out, *words(seed, step))
    return out
