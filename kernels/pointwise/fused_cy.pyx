"""The pointwise activations with Cython + OpenMP: the same passes as ``fused_numba``,
blocks over threads; each element computed in double and rounded once to the array's dtype.

Arrays below ``SERIAL`` elements stay on the calling thread (waking the team costs more
than the pass).
"""

import numpy as np

cimport openmp
from cython.parallel cimport prange
from libc.math cimport erf, exp, expm1, log1p, sqrt, tanh
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

ctypedef fused real:
    float
    double

cdef enum:
    BLOCK = 4096  # elements per prange iteration
    SERIAL = 32768  # below this many elements: the calling thread alone

include "../_flat.pxi"

# the family's kind codes (kernels/pointwise/__init__.py)
cdef enum:
    LEAKY_RELU = 0
    ELU = 1
    GELU = 2
    GELU_TANH = 3
    SILU = 4
    HARDSWISH = 5
    HARDSIGMOID = 6
    SOFTPLUS = 7
    MISH = 8

cdef double SQRT1_2 = sqrt(0.5)
cdef double GELU_PDF = 1.0 / sqrt(2.0 * 3.141592653589793)
cdef double GELU_TANH_BETA = sqrt(2.0 / 3.141592653589793)
cdef double GELU_TANH_KAPPA = 0.044715


cdef inline double _clamp06(double t) noexcept nogil:
    # NaN stays NaN: both comparisons are false
    if t < 0.0:
        return 0.0
    if t > 6.0:
        return 6.0
    return t


cdef inline double _f(int kind, double v, double a, double b) noexcept nogil:
    """f(v) (PyTorch's formulas; see reference)."""
    if kind == LEAKY_RELU:
        return v if v > 0.0 else v * a
    if kind == ELU:
        return v if v > 0.0 else expm1(v) * a
    if kind == GELU:
        return v * 0.5 * (1.0 + erf(v * SQRT1_2))
    if kind == GELU_TANH:
        return 0.5 * v * (1.0 + tanh(GELU_TANH_BETA * (v + GELU_TANH_KAPPA * v * v * v)))
    if kind == SILU:
        return v / (1.0 + exp(-v))
    if kind == HARDSWISH:
        return v * _clamp06(v + 3.0) / 6.0
    if kind == HARDSIGMOID:
        return _clamp06(v + 3.0) / 6.0
    if kind == SOFTPLUS:
        return v if v * a > b else log1p(exp(v * a)) / a
    return v * tanh(log1p(exp(v)))  # MISH


cdef inline double _df(int kind, double g, double v, double a, double b) noexcept nogil:
    """g * f'(v) (PyTorch's backward formulas; see reference.derivative)."""
    cdef double s, t, z, cdf, dt
    if kind == LEAKY_RELU:
        return g if v > 0.0 else g * a
    if kind == ELU:
        return g if v > 0.0 else g * (a * exp(v))
    if kind == GELU:
        cdf = 0.5 * (1.0 + erf(v * SQRT1_2))
        return g * (cdf + v * GELU_PDF * exp(-0.5 * v * v))
    if kind == GELU_TANH:
        t = tanh(GELU_TANH_BETA * (v + GELU_TANH_KAPPA * v * v * v))
        dt = (1.0 - t * t) * GELU_TANH_BETA * (1.0 + 3.0 * GELU_TANH_KAPPA * v * v)
        return g * (0.5 * (1.0 + t) + 0.5 * v * dt)
    if kind == SILU:
        s = 1.0 / (1.0 + exp(-v))
        return g * (s * (1.0 + v * (1.0 - s)))
    if kind == HARDSWISH:
        if v <= -3.0:
            return 0.0
        return g if v >= 3.0 else g * (v / 3.0 + 0.5)
    if kind == HARDSIGMOID:
        return g * (1.0 / 6.0) if v > -3.0 and v < 3.0 else 0.0
    if kind == SOFTPLUS:
        z = exp(v * a)
        return g if v * a > b else g * (z / (z + 1.0))
    s = 1.0 / (1.0 + exp(-v))  # MISH
    t = tanh(log1p(exp(v)))
    return g * (t + v * s * (1.0 - t * t))


# The piecewise-linear kinds get a loop of their own written with selects (_pick: both
# sides computed, no branch on the value's sign), which the compiler vectorises; the others
# call the element functions (their libm calls do not vectorise).

cdef inline double _pick(bint c, double p, double q) noexcept nogil:
    """p where c, else q, by blending the bits (GCC keeps a conditional choice between two
    products as a branch, which a random sign mispredicts; this vectorises)."""
    cdef uint64_t m = 0u - <uint64_t>c
    cdef uint64_t ip, iq
    memcpy(&ip, &p, 8)
    memcpy(&iq, &q, 8)
    ip = (ip & m) | (iq & ~m)
    memcpy(&p, &ip, 8)
    return p


cdef inline void _fwd_block(int kind, const real* x, real* y, double a, double b, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef double v, t
    if kind == LEAKY_RELU:
        for i in range(lo, hi):
            v = x[i]
            y[i] = <real>_pick(v > 0.0, v, v * a)
    elif kind == HARDSWISH:
        for i in range(lo, hi):
            v = x[i]
            t = v + 3.0
            t = 0.0 if t < 0.0 else t  # NaN passes both clamps
            t = 6.0 if t > 6.0 else t
            y[i] = <real>(v * t / 6.0)
    elif kind == HARDSIGMOID:
        for i in range(lo, hi):
            t = x[i] + 3.0
            t = 0.0 if t < 0.0 else t
            t = 6.0 if t > 6.0 else t
            y[i] = <real>(t / 6.0)
    else:
        for i in range(lo, hi):
            y[i] = <real>_f(kind, x[i], a, b)


cdef inline void _bwd_block(int kind, const real* g, const real* x, real* gx, double a, double b,
                            Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef double v, gv, r
    if kind == LEAKY_RELU:
        for i in range(lo, hi):
            gv = g[i]
            gx[i] = <real>_pick(x[i] > 0, gv, gv * a)
    elif kind == HARDSWISH:
        for i in range(lo, hi):
            gv, v = g[i], x[i]
            r = _pick(v >= 3.0, gv, gv * (v / 3.0 + 0.5))
            gx[i] = <real>_pick(v <= -3.0, 0.0, r)
    elif kind == HARDSIGMOID:
        for i in range(lo, hi):
            v = x[i]
            gx[i] = <real>_pick((v > -3.0) & (v < 3.0), g[i] * (1.0 / 6.0), 0.0)
    else:
        for i in range(lo, hi):
            gx[i] = <real>_df(kind, g[i], x[i], a, b)


def _forward(int kind, const real[::1] x, real[::1] y, double a, double b):
    cdef Py_ssize_t n = x.shape[0], blk, nb, lo, hi
    cdef int nt
    if n == 0:
        return
    nb, nt = _blocks(n)
    with nogil:
        for blk in prange(nb, schedule="static", num_threads=nt):
            lo = blk * BLOCK if nb > 1 else 0
            hi = lo + BLOCK if nb > 1 else n
            if hi > n:
                hi = n
            _fwd_block(kind, &x[0], &y[0], a, b, lo, hi)


def _backward(int kind, const real[::1] g, const real[::1] x, real[::1] gx, double a, double b):
    cdef Py_ssize_t n = g.shape[0], blk, nb, lo, hi
    cdef int nt
    if n == 0:
        return
    nb, nt = _blocks(n)
    with nogil:
        for blk in prange(nb, schedule="static", num_threads=nt):
            lo = blk * BLOCK if nb > 1 else 0
            hi = lo + BLOCK if nb > 1 else n
            if hi > n:
                hi = n
            _bwd_block(kind, &g[0], &x[0], &gx[0], a, b, lo, hi)


def pointwise_forward(kind, x, a, b):
    y = np.empty_like(x)
    _forward(int(kind), x.reshape(-1), y.reshape(-1), float(a), float(b))
    return y


def pointwise_backward(kind, g, x, a, b):
    gx = np.empty_like(g)
    _backward(int(kind), g.reshape(-1), x.reshape(-1), gx.reshape(-1), float(a), float(b))
    return gx
