"""The machine's measured limits and identity, timed in the same run as the benchmarks.

- float32 GEMM rate: a large ``np.matmul`` (2 n^3 FLOPs), best of a few runs;
- copy bandwidth: ``np.copyto`` between two arrays much larger than the caches
  (bytes read + bytes written), best of a few runs: the DRAM ceiling of the roofline;
  memory-bound cases are also judged against a copy of their own size
  (:func:`copy_gbps_at`), since arrays that fit in the caches move faster than DRAM allows.

Both use the thread count in force (``tapegrad.set_num_threads``), so the ceilings are
those the kernels run against.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np


def _best(fn: Any, repeat: int) -> float:
    fn()  # warm-up: page faults, BLAS thread start
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_gflops(n: int = 2048, repeat: int = 3) -> float:
    """Attained float32 GFLOP/s of an ``n x n`` by ``n x n`` ``np.matmul``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    t = _best(lambda: np.matmul(a, b, out=c), repeat)
    return 2.0 * n**3 / t / 1e9


def copy_gbps(mbytes: int = 64, repeat: int = 5) -> float:
    """Attained GB/s of ``np.copyto`` over ``mbytes`` MB (counting the read and the write)."""
    n = mbytes * 2**20 // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.zeros(n, dtype=np.float32)
    t = _best(lambda: np.copyto(dst, src), repeat)
    return 2.0 * src.nbytes / t / 1e9


_COPY_AT: dict[int, float] = {}


def copy_gbps_at(nbytes: int, repeat: int = 7) -> float:
    """GB/s of ``np.copyto`` of an array of ``nbytes`` bytes (read + write counted), best of
    ``repeat``; memoised per size. A memory-bound kernel whose arrays fit in the caches is
    judged against a copy of the same size, not against the DRAM bandwidth."""
    n = max(1, nbytes // 4)
    if n not in _COPY_AT:
        src = np.ones(n, dtype=np.float32)
        dst = np.zeros(n, dtype=np.float32)
        # short copies: several per sample so the timer's resolution does not dominate
        inner = max(1, int(2**20 // max(src.nbytes, 1)))

        def copy() -> None:
            for _ in range(inner):
                np.copyto(dst, src)

        t = _best(copy, repeat) / inner
        _COPY_AT[n] = 2.0 * src.nbytes / t / 1e9
    return _COPY_AT[n]


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # not installed
        return None


def _blas() -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_info

    return [
        {k: d.get(k) for k in ("internal_api", "architecture", "num_threads")}
        for d in threadpool_info()
        if d.get("user_api") == "blas"
    ]


def info(threads: int, *, quick: bool = False, with_torch: bool = False) -> dict[str, Any]:
    """CPU model, cores, thread counts, library versions, the BLAS kernels that run
    (threadpoolctl's ``internal_api``/``architecture``) and the two measured ceilings.

    PyTorch's side (``torch_threads``, ``torch_blas``) is filled in by the caller from
    PyTorch's own process; ``with_torch`` is kept for callers that pass it."""
    import tapegrad
    import tapegrad.kernels as K

    out: dict[str, Any] = {
        "cpu": K.registry.cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "threads": threads,
        "versions": {
            "tapegrad": tapegrad.__version__,
            "numpy": np.__version__,
            "numba": _version("numba"),
            "cython": _version("Cython"),
            "torch": _version("torch"),
        },
    }
    try:
        import numba

        out["numba_threads"] = numba.get_num_threads()
    except ImportError:
        pass
    out["blas"] = _blas()
    n = 1024 if quick else 2048
    out["gemm_gflops"] = gemm_gflops(n, 3)
    out["gemm_n"] = n
    out["copy_gbps"] = copy_gbps(32 if quick else 64, 5)
    return out
