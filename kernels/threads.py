"""One thread count for all three pools: Numba, OpenMP (Cython kernels) and BLAS.

On a 2-core machine, BLAS, Numba and OpenMP each starting their own threads
oversubscribe the cores; this module keeps them at one number.

Thread policy, without touching what other libraries in the process depend on:

- The Cython kernels run on tapegrad's own copy of the OpenMP runtime
  (``_omp/libtg-omp.so``, see setup.py), loaded before the first Cython kernel with idle
  threads that spin briefly, then sleep (``GOMP_SPINCOUNT`` in force only while it loads,
  unless the user set it or ``OMP_WAIT_POLICY``): a team that spins for long steals the
  cores that the BLAS threads and the other pool need next, and one that sleeps at once
  pays a wake-up at every parallel region, several per op. Other libraries' OpenMP
  runtimes (PyTorch's, the system's) keep their own policy, and importing PyTorch first no
  longer hands tapegrad's kernels PyTorch's spinning team.
- Numba's parallel kernels run on the threading layer Numba itself picks. The layer is one
  per process and other Numba code depends on it, so tapegrad leaves it alone: its
  ``workqueue`` layer would let idle workers sleep, but it aborts the whole process when two
  Python threads launch parallel kernels at once. Choose a layer with
  ``NUMBA_THREADING_LAYER`` if you need one.
- One team at a time: at more than one thread ``auto`` runs each op's Cython variant before
  its Numba twin (:func:`tapegrad.kernels.registry.one_team_order`), so a step does not
  start Numba's team, and large GEMMs run on tapegrad's team with NumPy's BLAS held at one
  thread for the call (:mod:`tapegrad.kernels.blas`), so OpenBLAS's workers, which spin
  after each threaded call, stay asleep.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path

from ._env import getenv

OMP_LIB = Path(__file__).parent / "_omp" / "libtg-omp.so"

_state: dict[str, object] = {"n": None, "blas": None, "applied": False, "omp": None}


# Rounds an idle thread of tapegrad's team spins before it sleeps (GOMP_SPINCOUNT; about 1-2
# ms on a Zen 5 core): an op's passes and the next layer's kernels start their parallel
# regions within that, so the worker is awake for them, while a team between training steps
# or beside other work sleeps (libgomp's default spins 10x longer). Sleeping at once
# (OMP_WAIT_POLICY=PASSIVE, the policy before) cost every region a wake-up: 2-thread forward
# + backward of eight conv layers took 0.83-0.92 of the time with this spin
# (benchmarks/results/openmp-spin.md).
SPIN_COUNT = "30000"


def load_openmp() -> bool:
    """Load tapegrad's private OpenMP runtime once, before any Cython kernel.

    Its idle threads spin ``SPIN_COUNT`` rounds, then sleep, unless ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` is set in the environment; ``GOMP_SPINCOUNT`` is set only while the
    runtime initialises and removed after, so no other library sees it. Returns True if
    the private runtime is in use (False for a build linked against the system libgomp).
    """
    if _state["omp"] is None:
        _state["omp"] = False
        if OMP_LIB.exists() and sys.platform == "linux":
            own = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
            if not own:
                os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
            try:
                # DEEPBIND: the runtime's references to its own exported functions (its
                # OpenACC and offload entry points) resolve to itself, not to a libgomp
                # another library loaded globally first (PyTorch's)
                ctypes.CDLL(str(OMP_LIB), mode=os.RTLD_LOCAL | getattr(os, "RTLD_DEEPBIND", 0))
                _state["omp"] = True
            except OSError:
                pass
            finally:
                if not own:
                    del os.environ["GOMP_SPINCOUNT"]
    return bool(_state["omp"])


def import_extension(module_path: str):
    """Import a Cython kernel module so that it binds to tapegrad's OpenMP runtime.

    The extension resolves OpenMP's symbols in its own dependencies first
    (``RTLD_DEEPBIND``), so a libgomp that another library loaded globally (PyTorch loads
    its own with ``RTLD_GLOBAL``) does not capture it.
    """
    import importlib

    if not load_openmp() or not hasattr(os, "RTLD_DEEPBIND"):
        return importlib.import_module(module_path)
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        return importlib.import_module(module_path)
    finally:
        sys.setdlopenflags(flags)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """The thread count used when neither ``set_num_threads`` nor ``TAPEGRAD_NUM_THREADS``
    gave one: the cores this process may run on, less those other processes keep busy
    (:func:`busy_cores`, rounded), and at least 1. Decided once, at the first kernel.

    Every parallel region waits for its slowest thread; a thread that shares its core
    with another busy process is descheduled for whole time slices, so on a busy machine
    one thread is faster than two. ``cores`` and ``load`` default to this machine's.
    """
    cores = _cores() if cores is None else cores
    if load is None:
        load = busy_cores()
    return max(1, min(cores, cores - int(load + 0.5)))


def busy_cores(window: float = 0.03) -> float:
    """How many cores other processes keep busy now: ``/proc/stat`` sampled over
    ``window`` seconds while this thread sleeps; the 1-minute load average where there is
    no ``/proc/stat``; 0.0 if neither can be read.

    Busy is every tick that was not idle or waiting for I/O, steal included: on a virtual
    machine whose hypervisor runs other guests on its cores, a stolen tick holds a
    parallel region up just as a busy neighbour process does."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4]  # all, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(window)
        t1, i1 = sample()
        ncpu = os.cpu_count() or 1
        return ncpu * (1.0 - (i1 - i0) / (t1 - t0)) if t1 > t0 else 0.0
    except (OSError, ValueError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def _default() -> int:
    """``TAPEGRAD_NUM_THREADS`` if set (read at every call, so a change takes effect at the
    next kernel), else the load-aware :func:`default_threads`, decided once."""
    env = getenv("TAPEGRAD_NUM_THREADS")  # cheap: dispatch asks for the count per op
    if env:
        return int(env)
    if _state.get("default") is None:  # decided once per process
        _state["default"] = default_threads()
    return int(_state["default"])


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
        set_omp_threads = import_extension("tapegrad.kernels.parallel").set_omp_threads
    except ImportError:
        return
    set_omp_threads(n)
