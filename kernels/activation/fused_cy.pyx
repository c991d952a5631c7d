"""ReLU with Cython + OpenMP: the same passes as ``fused_numba``, blocks over threads.

Arrays below ``SERIAL`` elements stay on the calling thread (the record's ``serial_below``,
:data:`tapegrad.kernels.activation.SERIAL_BELOW`): a memory-bound pass gains from a
second thread once it is long enough to pay for waking the team (``SERIAL_BELOW``'s
docstring has the measurements).
"""

import numpy as np

cimport openmp
from cython.parallel cimport prange

ctypedef fused real:
    float
    double

cdef enum:
    BLOCK = 4096  # elements per prange iteration
    SERIAL = 1 << 19  # below this many elements: the calling thread alone

include "../_flat.pxi"

SERIAL_BELOW = SERIAL


def team_size(Py_ssize_t elements):
    """The threads a call on this many elements runs on (1 below ``SERIAL_BELOW``)."""
    return _blocks(elements)[1]


cdef inline void _fwd_block(const real* x, real* y, unsigned char* mask, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v
    for i in range(lo, hi):
        v = x[i]
        # PyTorch's semantics: y = x unless x < 0 (NaN and -0.0 pass through), and the
        # gradient flows unless y <= 0 (it flows through NaN, not through -0.0)
        mask[i] = not (v <= 0)
        y[i] = 0 if v < 0 else v


def _forward(const real[::1] x, unsigned char[::1] mask, real[::1] y):
    cdef Py_ssize_t n = x.shape[0], b, nb, lo, hi
    cdef int nt
    if n == 0:
        return
    nb, nt = _blocks(n)
    with nogil:
        for b in prange(nb, schedule="static", num_threads=nt):
            lo = b * BLOCK if nb > 1 else 0
            hi = lo + BLOCK if nb > 1 else n
            if hi > n:
                hi = n
            _fwd_block(&x[0], &y[0], &mask[0], lo, hi)


def _backward(const real[::1] g, const unsigned char[::1] mask, real[::1] gx):
    cdef Py_ssize_t n = g.shape[0], b, nb, lo, hi
    cdef int nt
    if n == 0:
        return
    nb, nt = _blocks(n)
    with nogil:
        for b in prange(nb, schedule="static", num_threads=nt):
            lo = b * BLOCK if nb > 1 else 0
            hi = lo + BLOCK if nb > 1 else n
            if hi > n:
                hi = n
            _masked_block(&g[0], &mask[0], &gx[0], lo, hi)


def relu_forward(x):
    y = np.empty_like(x)
    mask = np.empty(x.shape, np.uint8)
    _forward(x.reshape(-1), mask.reshape(-1), y.reshape(-1))
    return y, mask


def relu_backward(g, mask):
    gx = np.empty_like(g)
    _backward(g.reshape(-1), mask.reshape(-1), gx.reshape(-1))
    return gx
