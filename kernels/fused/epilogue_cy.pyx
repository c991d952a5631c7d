"""Fused epilogues with Cython + OpenMP: the same passes as ``epilogue_numba``, run on
tapegrad's own OpenMP team (whose idle threads sleep).

Calls below ``SERIAL`` elements stay on the calling thread (the records' ``serial_below``,
:data:`tapegrad.kernels.fused.SERIAL_BELOW`): a memory-bound pass gains from a
second thread once it is long enough to pay for waking the team (``SERIAL_BELOW``'s
docstring has the measurements).
"""

import numpy as np

from tapegrad.kernels.fused.reference import channel_sums

cimport openmp
from cython.parallel cimport prange

ctypedef fused real:
    float
    double

cdef enum:
    BLOCK = 4096  # elements per prange iteration of the flat passes
    SERIAL = 1 << 19  # below this many elements: the calling thread alone

include "../_flat.pxi"


cdef inline int _threads(Py_ssize_t n) noexcept nogil:
    return 1 if n < SERIAL else openmp.omp_get_max_threads()


SERIAL_BELOW = SERIAL


def team_size(Py_ssize_t elements):
    """The threads a call on this many elements runs on (1 below ``SERIAL_BELOW``)."""
    return _threads(elements)


cdef inline void _relu_row(real* y, unsigned char* mask, real bias, bint has_bias,
                           Py_ssize_t s) noexcept nogil:
    cdef Py_ssize_t t
    cdef real u
    for t in range(s):
        # with no bias the value is y itself: adding +0.0 would turn -0.0 into +0.0
        u = y[t] + bias if has_bias else y[t]
        mask[t] = not (u <= 0)
        y[t] = 0 if u < 0 else u


def _bias_relu(real[:, :, ::1] y3, const real[::1] b, unsigned char[:, :, ::1] mask3,
               bint has_bias):
    cdef Py_ssize_t n = y3.shape[0], c = y3.shape[1], s = y3.shape[2]
    cdef Py_ssize_t rows = n * c, r, i, j
    cdef int nt = _threads(rows * s)
    if rows == 0 or s == 0:
        return
    with nogil:
        for r in prange(rows, schedule="static", num_threads=nt):
            i = r // c
            j = r % c
            _relu_row(&y3[i, j, 0], &mask3[i, j, 0], b[j if has_bias else 0], has_bias, s)


def _masked_flat(const real[::1] g, const unsigned char[::1] mask, real[::1] gx):
    cdef Py_ssize_t n = g.shape[0], blk, lo, hi
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    cdef int nt = _threads(n)
    if n == 0:
        return
    with nogil:
        for blk in prange(nb, schedule="static", num_threads=nt):
            lo = blk * BLOCK
            hi = lo + BLOCK
            if hi > n:
                hi = n
            _masked_block(&g[0], &mask[0], &gx[0], lo, hi)


cdef inline void _add_relu_block(const real* a, const real* b, real* y, unsigned char* mask,
                                 Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t t
    cdef real u
    for t in range(lo, hi):
        u = a[t] + b[t]
        mask[t] = not (u <= 0)
        y[t] = 0 if u < 0 else u


def _add_relu(const real[::1] a, const real[::1] b, real[::1] y, unsigned char[::1] mask):
    cdef Py_ssize_t n = a.shape[0], blk, lo, hi
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    cdef int nt = _threads(n)
    if n == 0:
        return
    with nogil:
        for blk in prange(nb, schedule="static", num_threads=nt):
            lo = blk * BLOCK
            hi = lo + BLOCK
            if hi > n:
                hi = n
            _add_relu_block(&a[0], &b[0], &y[0], &mask[0], lo, hi)


cdef inline void _add_block(const real* a, const real* b, real* y,
                            Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(lo, hi):
        y[t] = a[t] + b[t]


def _add(const real[::1] a, const real[::1] b, real[::1] y):
    cdef Py_ssize_t n = a.shape[0], blk, lo, hi
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    cdef int nt = _threads(n)
    if n == 0:
        return
    with nogil:
        for blk in prange(nb, schedule="static", num_threads=nt):
            lo = blk * BLOCK
            hi = lo + BLOCK
            if hi > n:
                hi = n
            _add_block(&a[0], &b[0], &y[0], lo, hi)


def _rows(a):
    """(N, C, S) view of an (N, C, *) array (a 1-D array is one row per element)."""
    if a.ndim == 1:
        return a.reshape(1, a.shape[0], 1)
    return a.reshape(a.shape[0], a.shape[1], -1)


def bias_relu_forward(y, b):
    """y (N, C, *) <- relu(y + b[c]) in place; returns the uint8 mask."""
    mask = np.empty(y.shape, np.uint8)
    if y.size:
        bias = np.zeros(1, y.dtype) if b is None else b
        _bias_relu(_rows(y), bias, _rows(mask), b is not None)
    return mask


def masked_backward(g, mask, channel_sum):
    """(g where mask else 0, its per-channel sum or None)."""
    gx = np.empty_like(g)
    if g.size:
        _masked_flat(g.reshape(-1), mask.reshape(-1), gx.reshape(-1))
    # the bias gradient as the unfused op sums it
    return gx, (channel_sums(gx) if channel_sum else None)


def add_relu_forward(a, b):
    """(relu(a + b), mask)"""
    y = np.empty_like(a)
    mask = np.empty(a.shape, np.uint8)
    if a.size:
        _add_relu(a.reshape(-1), b.reshape(-1), y.reshape(-1), mask.reshape(-1))
    return y, mask


def add_forward(a, b):
    """a + b"""
    y = np.empty_like(a)
    if a.size:
        _add(a.reshape(-1), b.reshape(-1), y.reshape(-1))
    return y
