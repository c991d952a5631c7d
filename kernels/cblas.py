"""The addresses of NumPy's own ``cblas_sgemm``/``cblas_dgemm``, for Cython kernels that run
GEMMs from their OpenMP threads.

A kernel that gives each thread whole images (or blocks of Winograd tiles) and lets it
unfold, multiply and fold them without waiting for the other threads calls the BLAS NumPy
itself links (the library ``np.matmul`` uses), through a C function pointer, with no
Python and no GIL. The BLAS runs on the calling thread only: :func:`single_threaded`
holds its thread count at 1 for the duration of such a kernel.

Only 64-bit-integer (ILP64) OpenBLAS builds, as in NumPy's wheels, are recognised; with
any other BLAS :func:`gemm_addresses` returns None and the kernels fall back to their
NumPy drivers.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ._env import getenv

_found: dict[str, object] = {}

# ILP64 symbol names of NumPy's OpenBLAS wheels (scipy-openblas64), newest first
_NAMES = (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"), ("cblas_sgemm64_", "cblas_dgemm64_"))


def _numpy_blas_controller():
    from threadpoolctl import ThreadpoolController

    np_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        path = os.path.abspath(lib.filepath or "")
        if path.startswith(np_dir) and "numpy" in path:
            return lib
    return None


def gemm_addresses() -> tuple[int, int] | None:
    """``(sgemm, dgemm)`` addresses of NumPy's ILP64 ``cblas_?gemm``, or None when NumPy's
    BLAS is not an ILP64 OpenBLAS (or cannot be found).

    Set ``TAPEGRAD_NO_THREAD_GEMM=1`` to make this return None (the kernels then use
    their NumPy drivers).
    """
    if getenv("TAPEGRAD_NO_THREAD_GEMM") == "1":
        return None
    if "addr" not in _found:
        _found["addr"] = None
        try:
            lib = _numpy_blas_controller()
            if lib is not None and getattr(lib, "internal_api", "") == "openblas":
                dll = ctypes.CDLL(lib.filepath)
                for s_name, d_name in _NAMES:
                    try:
                        s, d = getattr(dll, s_name), getattr(dll, d_name)
                    except AttributeError:
                        continue
                    _found["addr"] = (
                        ctypes.cast(s, ctypes.c_void_p).value,
                        ctypes.cast(d, ctypes.c_void_p).value,
                    )
                    _found["lib"] = lib
                    break
        except (ImportError, OSError):
            _found["addr"] = None
    return _found["addr"]  # type: ignore[return-value]


def gemm_address(dtype) -> int | None:
    """The ``cblas_?gemm`` address for ``dtype`` (float32 or float64), or None."""
    addr = gemm_addresses()
    if addr is None:
        return None
    return addr[0] if np.dtype(dtype) == np.float32 else addr[1]


@contextmanager
def single_threaded() -> Iterator[None]:
    """NumPy's BLAS on one thread per call for the duration (restored after): each OpenMP
    thread of a kernel runs its own GEMMs instead of each call waking a BLAS team."""
    lib = _found.get("lib")
    if lib is None:
        yield
        return
    before = lib.num_threads
    if before == 1:
        yield
        return
    lib.set_num_threads(1)
    try:
        yield
    finally:
        lib.set_num_threads(before)
