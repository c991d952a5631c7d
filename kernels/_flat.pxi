# Helpers shared by the Cython kernels of flat elementwise passes (ReLU, the pointwise
# activations, the fused epilogues), included textually: each .pyx cimports openmp and
# defines the fused type ``real`` and the enum constants BLOCK (elements per prange
# iteration) and SERIAL (below this many elements the calling thread alone) before it
# includes this file.

from libc.stdint cimport uint32_t, uint64_t


cdef inline (Py_ssize_t, int) _blocks(Py_ssize_t n) noexcept:
    """(blocks, threads): one block on the calling thread below SERIAL elements."""
    if n < SERIAL:
        return 1, 1
    return (n + BLOCK - 1) // BLOCK, openmp.omp_get_max_threads()


cdef inline void _masked_block(const real* g, const unsigned char* mask, real* gx,
                               Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # gx = g where mask else +0.0: the gradient's bits ANDed with all-ones / all-zeros,
    # branch-free (a ternary here compiled to a branch that a random mask mispredicts half
    # the time: 15x slower), and unlike g * mask it gives +0.0 for a NaN or inf gradient
    # where the mask is 0
    cdef Py_ssize_t i
    cdef const uint32_t* g32
    cdef uint32_t* o32
    cdef const uint64_t* g64
    cdef uint64_t* o64
    if real is float:
        g32, o32 = <const uint32_t*>g, <uint32_t*>gx
        for i in range(lo, hi):
            o32[i] = g32[i] & (0u - <uint32_t>mask[i])
    else:
        g64, o64 = <const uint64_t*>g, <uint64_t*>gx
        for i in range(lo, hi):
            o64[i] = g64[i] & (0u - <uint64_t>mask[i])
