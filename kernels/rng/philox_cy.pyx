"""Philox-4x32-10 with Cython + OpenMP: the same streams as ``philox_numba``."""

import numpy as np

from cython.parallel cimport prange
from libc.string cimport memcpy

from tapegrad.kernels.rng import key_words, threshold

include "philox.pxi"


# One group per call: the scratch buffers live on the calling thread's stack (a C array
# declared in the function that runs prange would be shared between the threads).
cdef inline void _bits_group(uint32_t* out, Py_ssize_t n, Py_ssize_t g, uint32_t s0,
                             uint32_t s1, uint32_t k0, uint32_t k1) noexcept nogil:
    cdef uint32_t buf[GROUP]
    cdef Py_ssize_t base = g * GROUP, m = n - g * GROUP
    if m >= GROUP:
        philox_group(g, s0, s1, k0, k1, out + base)
    else:
        philox_group(g, s0, s1, k0, k1, buf)
        memcpy(out + base, buf, m * sizeof(uint32_t))


cdef inline void _normal_group(double* out, Py_ssize_t n, Py_ssize_t g, uint32_t s0,
                               uint32_t s1, uint32_t k0, uint32_t k1) noexcept nogil:
    cdef uint32_t bits[GROUP]
    cdef double z[GROUP]
    cdef Py_ssize_t base = g * GROUP, m = n - g * GROUP
    normal_group(g, s0, s1, k0, k1, bits, z)
    if m > GROUP:
        m = GROUP
    memcpy(out + base, z, m * sizeof(double))


def _bits(uint32_t[::1] out, uint32_t s0, uint32_t s1, uint32_t k0, uint32_t k1):
    cdef Py_ssize_t n = out.shape[0], g
    if n == 0:
        return
    with nogil:
        for g in prange((n + GROUP - 1) // GROUP, schedule="static"):
            _bits_group(&out[0], n, g, s0, s1, k0, k1)


def _normal(double[::1] out, uint32_t s0, uint32_t s1, uint32_t k0, uint32_t k1):
    cdef Py_ssize_t n = out.shape[0], g
    if n == 0:
        return
    with nogil:
        for g in prange((n + GROUP - 1) // GROUP, schedule="static"):
            _normal_group(&out[0], n, g, s0, s1, k0, k1)


def words(seed, step):
    k0, k1, s0, s1 = key_words(seed, step)
    return s0, s1, k0, k1


def random_bits(seed, step, n):
    out = np.empty(n, dtype=np.uint32)
    _bits(out, *words(seed, step))
    return out


def bernoulli_keep(seed, step, n, p):
    bits = random_bits(seed, step, n)
    return (bits.astype(np.uint64) >= np.uint64(threshold(p))).astype(np.uint8)


def normal(seed, step, n):
    out = np.empty(n, dtype=np.float64)
    _normal(out, *words(seed, step))
    return out
