"""One GEMM split over tapegrad's own OpenMP team, each thread calling NumPy's BLAS on its
block (the BLAS held at one thread by the caller, ``cblas.single_threaded``).

``kernels/blas.py`` sends its large products here instead of to a BLAS thread team: the
team's idle threads sleep (tapegrad's OpenMP runtime is passive), while OpenBLAS's own
workers keep spinning on the cores for a long while after every threaded call, taking them
from the next kernel's threads.
"""

cimport openmp
from cython.parallel cimport prange
from libc.stdint cimport int64_t

ctypedef void (*_sgemm_t)(int, int, int, int64_t, int64_t, int64_t, float, const float*,
                          int64_t, const float*, int64_t, float, float*, int64_t) noexcept nogil
ctypedef void (*_dgemm_t)(int, int, int, int64_t, int64_t, int64_t, double, const double*,
                          int64_t, const double*, int64_t, double, double*, int64_t) noexcept nogil

cdef enum:
    ALIGN = 16  # block edges at multiples of this many rows or columns


cdef inline void _block(size_t fn, bint dbl, bint ta, bint tb, Py_ssize_t m, Py_ssize_t n,
                        Py_ssize_t k, size_t a, Py_ssize_t lda, size_t b, Py_ssize_t ldb,
                        size_t c, Py_ssize_t ldc) noexcept nogil:
    # c (m x n) = op(a) @ op(b); a, b, c are byte addresses
    cdef int opa = 112 if ta else 111
    cdef int opb = 112 if tb else 111
    if m <= 0 or n <= 0:
        return
    if dbl:
        (<_dgemm_t>fn)(101, opa, opb, m, n, k, 1.0, <const double*>a, lda, <const double*>b,
                       ldb, 0.0, <double*>c, ldc)
    else:
        (<_sgemm_t>fn)(101, opa, opb, m, n, k, 1.0, <const float*>a, lda, <const float*>b,
                       ldb, 0.0, <float*>c, ldc)


def gemm(size_t fn, bint dbl, bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
         size_t a, Py_ssize_t lda, size_t b, Py_ssize_t ldb, size_t c, Py_ssize_t ldc,
         int nthreads):
    """``c = op(a) @ op(b)`` (row-major, leading dimensions in elements, addresses in bytes),
    the rows of ``c`` (or its columns, when it has more of them) split into ``nthreads``
    blocks, one per thread of tapegrad's OpenMP team."""
    cdef Py_ssize_t item = 8 if dbl else 4
    cdef bint by_cols = n >= m
    cdef Py_ssize_t total = n if by_cols else m
    cdef Py_ssize_t step = (total + nthreads - 1) // nthreads
    cdef Py_ssize_t t, lo, hi
    step = ((step + ALIGN - 1) // ALIGN) * ALIGN
    nthreads = <int>((total + step - 1) // step)
    if nthreads < 1:
        nthreads = 1
    with nogil:
        for t in prange(nthreads, num_threads=nthreads, schedule="static", chunksize=1):
            lo = t * step
            hi = lo + step
            if hi > total:
                hi = total
            if by_cols:  # columns lo:hi of op(b) and c
                _block(fn, dbl, ta, tb, m, hi - lo, k, a, lda,
                       b + item * (lo * ldb if tb else lo), ldb, c + item * lo, ldc)
            else:  # rows lo:hi of op(a) and c
                _block(fn, dbl, ta, tb, hi - lo, n, k, a + item * (lo if ta else lo * lda),
                       lda, b, ldb, c + item * lo * ldc, ldc)
