# Philox-4x32-10 block function and Box-Muller, shared by the Cython kernels through
# ``include``: the same arithmetic as ``philox_numba.philox`` (and bit-identical to it).
from libc.stdint cimport uint32_t, uint64_t
from libc.math cimport sqrt, log, cos, sin


cdef inline void philox4x32(uint64_t blk, uint32_t s0, uint32_t s1,
                            uint32_t k0, uint32_t k1, uint32_t* out) noexcept nogil:
    cdef uint32_t c0 = <uint32_t>blk, c1 = <uint32_t>(blk >> 32), c2 = s0, c3 = s1
    cdef uint64_t p0, p1
    cdef uint32_t n0, n2
    cdef int r
    for r in range(10):
        p0 = <uint64_t>0xD2511F53 * c0
        p1 = <uint64_t>0xCD9E8D57 * c2
        n0 = <uint32_t>(p1 >> 32) ^ c1 ^ k0
        n2 = <uint32_t>(p0 >> 32) ^ c3 ^ k1
        c1 = <uint32_t>p1
        c3 = <uint32_t>p0
        c0 = n0
        c2 = n2
        k0 = k0 + <uint32_t>0x9E3779B9
        k1 = k1 + <uint32_t>0xBB67AE85
    out[0] = c0
    out[1] = c1
    out[2] = c2
    out[3] = c3


cdef inline void box_muller(uint32_t a, uint32_t b, double* z) noexcept nogil:
    cdef double ua = (<double>a + 0.5) * 2.3283064365386963e-10
    cdef double ub = (<double>b + 0.5) * 2.3283064365386963e-10
    cdef double r = sqrt(-2.0 * log(ua))
    cdef double t = 6.283185307179586 * ub
    z[0] = r * cos(t)
    z[1] = r * sin(t)
