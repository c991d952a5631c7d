"""One thread count for all three pools: Numba, OpenMP (Cython kernels) and BLAS.

On a 2-core machine, BLAS, Numba and OpenMP each starting their own threads
oversubscribe the cores; this module keeps them at one number.
"""

from __future__ import annotations

import os

# Idle OpenMP threads (Cython kernels, Numba's omp layer) sleep instead of spinning: on a
# 2-core machine a spinning pool steals the cores BLAS and the other pool need next, and on
# a shared machine it made small training steps 10-100x slower. Must be set before libgomp
# loads; a user's explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_state: dict[str, object] = {"n": None, "blas": None, "applied": False}


def _default() -> int:
    env = os.environ.get("TAPEGRAD_NUM_THREADS")
    if env:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """The thread count tapegrad's kernels use."""
    n = _state["n"]
    return int(n) if n is not None else _default()


def set_num_threads(n: int) -> None:
    """Set Numba's, OpenMP's and BLAS's thread counts together."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _state["n"] = n
    apply()


def ensure_applied() -> None:
    """Apply the thread count once, before the first kernel runs (honours
    ``TAPEGRAD_NUM_THREADS`` without an explicit ``set_num_threads`` call), and the
    allocator setting of :mod:`.memory`."""
    if not _state["applied"]:
        apply()


def apply() -> None:
    """Push the current count to every pool (Numba, OpenMP, BLAS)."""
    _state["applied"] = True
    from . import memory

    memory.ensure_applied()
    n = get_num_threads()
    from threadpoolctl import threadpool_limits

    _state["blas"] = threadpool_limits(limits=n, user_api="blas")
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    try:
        from .parallel import set_omp_threads

        set_omp_threads(n)
    except ImportError:
        pass
