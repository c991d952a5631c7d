"""OpenMP thread control for the Cython kernels."""

cimport openmp


def set_omp_threads(int n):
    """Set the OpenMP thread count the Cython ``prange`` loops use."""
    openmp.omp_set_num_threads(n)


def get_omp_threads():
    return openmp.omp_get_max_threads()
