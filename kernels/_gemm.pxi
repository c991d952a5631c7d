# GEMM through NumPy's own ILP64 cblas_?gemm, called from OpenMP threads without the GIL
# (the address comes from kernels/cblas.py; included after _common.pxi, which defines
# ``real``). Row-major; the BLAS runs on the calling thread (cblas.single_threaded).

from libc.stdint cimport int64_t

ctypedef void (*_sgemm_t)(int, int, int, int64_t, int64_t, int64_t, float, const float*,
                          int64_t, const float*, int64_t, float, float*, int64_t) noexcept nogil
ctypedef void (*_dgemm_t)(int, int, int, int64_t, int64_t, int64_t, double, const double*,
                          int64_t, const double*, int64_t, double, double*, int64_t) noexcept nogil


cdef inline void _gemm(size_t addr, bint ta, bint tb, Py_ssize_t m, Py_ssize_t n,
                       Py_ssize_t k, const real* a, Py_ssize_t lda, const real* b,
                       Py_ssize_t ldb, real beta, real* c, Py_ssize_t ldc) noexcept nogil:
    # c (m x n) = op(a) @ op(b) + beta * c
    cdef int opa = 112 if ta else 111
    cdef int opb = 112 if tb else 111
    if real is float:
        (<_sgemm_t>addr)(101, opa, opb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
    else:
        (<_dgemm_t>addr)(101, opa, opb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
