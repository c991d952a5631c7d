# Helpers shared by the Cython kernels (convolutions, pooling), included textually:
# each .pyx cimports openmp before including this file.

# Below this much work (multiply-adds or elements) a call runs on the calling thread only,
# like PyTorch's grain size: a sub-millisecond loop gains little from a second thread, and
# on a loaded machine each parallel region can wait a scheduler slice for a member of the
# OpenMP team (LeNet-5's step at 2 threads on a busy 2-core machine ran several times
# faster with these kernels serial; benchmarks/results/threads-policy.md).
cdef enum:
    _GRAIN = 1 << 21


cdef inline int _team(Py_ssize_t work) noexcept nogil:
    return 1 if work < _GRAIN else openmp.omp_get_max_threads()


ctypedef fused real:
    float
    double


# Indices i with 0 <= i*s + off < w, capped at n, form [lo, hi). Two value-returning
# functions (not one writing through pointers) so prange loops see lo/hi assigned and make
# them thread-private.
cdef inline Py_ssize_t _lo(Py_ssize_t off, Py_ssize_t s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t a = 0
    if off < 0:
        a = (-off + s - 1) // s
    return a if a < n else n


cdef inline Py_ssize_t _hi(Py_ssize_t off, Py_ssize_t s, Py_ssize_t w, Py_ssize_t n,
                           Py_ssize_t lo) noexcept nogil:
    cdef Py_ssize_t z = 0
    if w - off > 0:
        z = (w - off + s - 1) // s
    if z > n:
        z = n
    return z if z > lo else lo
