"""The process group: MPI set-up, this process's rank, collectives on small values, ending
the whole job from one rank (:func:`abort`) and checking that the ranks agree
(:func:`check_same_config`).

``mpi4py`` is imported only when a function here needs MPI.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, NoReturn

import numpy as np

_INSTALL_HINT = (
    "tapegrad.distributed needs mpi4py and an MPI library: "
    "`pip install tapegrad[mpi]` (installs mpi4py) and, on Debian/Ubuntu, "
    "`apt-get install openmpi-bin libopenmpi-dev` (Open MPI's mpirun and headers)"
)

# process-wide state set by init(); ``comm`` stays None until MPI is initialised
_state: dict[str, Any] = {"comm": None, "rank": 0, "world_size": 1, "hook": None}


class DistInfo(NamedTuple):
    """What :func:`init` returns: this process's rank and the number of ranks."""

    rank: int
    world_size: int


def _mpi() -> Any:
    """The ``mpi4py.MPI`` module, or an ImportError saying what to install."""
    # Open MPI busy-polls while a rank waits in a collective; on a node shared with other
    # work (or with more ranks than free cores) the spinning rank holds the core its peer
    # needs, and a tiny Allreduce takes a thousand times longer. Yielding costs next to
    # nothing on an idle core. Read at MPI_Init (the import below);
    # OMPI_MCA_mpi_yield_when_idle=0 restores busy polling.
    os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    try:
        from mpi4py import MPI
    except (ImportError, OSError, RuntimeError) as exc:  # OSError: libmpi.so not found
        raise ImportError(f"{_INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
    return MPI


def init(comm: Any = None, num_threads: int | None = None, abort_on_error: bool = True) -> DistInfo:
    """Initialise MPI (through mpi4py) and return ``DistInfo(rank, world_size)``.

    ``comm``: the communicator to train over (default ``MPI.COMM_WORLD``).
    ``num_threads``: kernel threads per rank. Default: ``TAPEGRAD_NUM_THREADS`` if set,
    otherwise the node's cores divided by the ranks on that node (so two ranks on a
    2-core machine get one thread each, one rank per node gets every core).
    ``abort_on_error``: an uncaught exception on any rank prints its traceback and calls
    ``MPI_Abort`` so the whole job exits non-zero instead of the other ranks waiting
    forever inside a collective (only installed when there is more than one rank).
    Calling ``init`` again returns the same values.
    """
    if _state["comm"] is not None:
        return DistInfo(_state["rank"], _state["world_size"])
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    rank, size = comm.Get_rank(), comm.Get_size()
    _state.update(comm=comm, rank=rank, world_size=size)
    if num_threads is None and not os.environ.get("TAPEGRAD_NUM_THREADS"):
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        per_node = local.Get_size()
        local.Free()
        num_threads = max(1, (os.cpu_count() or 1) // per_node)
    if num_threads is not None:
        from ..kernels import set_num_threads

        set_num_threads(int(num_threads))
    if abort_on_error and size > 1:
        _install_abort_hook(comm)
    return DistInfo(rank, size)


def _install_abort_hook(comm: Any) -> None:
    previous = sys.excepthook

    def hook(exc_type: Any, exc: BaseException, tb: Any) -> None:
        # print first: MPI_Abort kills this process and the job, the traceback is all the
        # user gets; the rank prefix says which process failed
        sys.stderr.write(f"tapegrad.distributed: rank {comm.Get_rank()} raised an error\n")
        previous(exc_type, exc, tb)
        sys.stderr.flush()
        sys.stdout.flush()
        comm.Abort(1)

    _state["hook"] = hook
    sys.excepthook = hook


def abort(message: str, code: int = 1) -> NoReturn:
    """End the whole job from this rank, with ``message`` on stderr.

    Prints ``tapegrad: rank R: message``, flushes both streams and calls ``MPI_Abort``,
    which ends every rank of the job at once (the others may be waiting in a collective
    this rank will never join). In a run without MPI, or with one rank, it raises
    ``SystemExit(code)`` after printing instead.

    Parameters
    ----------
    message : str
        One line saying what went wrong on this rank.
    code : int
        The exit status the job ends with (non-zero).
    """
    sys.stderr.write(f"tapegrad: rank {get_rank()}: {message}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    if _state["comm"] is not None and get_world_size() > 1:
        _state["comm"].Abort(int(code) or 1)
    raise SystemExit(int(code) or 1)


class ConfigMismatchError(ValueError):
    """Ranks of one job were started with different run configurations."""


def check_same_config(config: Mapping[str, Any]) -> None:
    """Raise on every rank unless all ranks hold the same ``config`` (one allgather).

    ``config`` maps names to plain values (numbers, strings, None, tuples of them): the
    things every replica must agree on for the collectives to line up, such as the model,
    epochs, batch size, dataset length and seed. Ranks that disagree would otherwise take
    different numbers of steps and wait for each other forever.

    Raises
    ------
    ConfigMismatchError
        On every rank, naming each field that differs and its value on each rank.
    """
    if _state["comm"] is None or get_world_size() == 1:
        return
    mine = {str(k): repr(v) for k, v in sorted(config.items())}
    digest = hashlib.sha256(repr(sorted(mine.items())).encode()).hexdigest()
    everyone = _state["comm"].allgather((digest, mine))
    if all(d == digest for d, _ in everyone):
        return
    keys = sorted(set().union(*(m for _, m in everyone)))
    diffs = []
    for k in keys:
        values = [m.get(k, "<missing>") for _, m in everyone]
        if len(set(values)) > 1:
            per_rank = ", ".join(f"{v} on rank {r}" for r, v in enumerate(values))
            diffs.append(f"{k} is {per_rank}")
    raise ConfigMismatchError(
        "tapegrad.distributed: the ranks were started with different configurations: "
        + "; ".join(diffs)
    )


def is_initialized() -> bool:
    """Whether :func:`init` has run in this process."""
    return _state["comm"] is not None


def get_rank() -> int:
    """This process's rank (0 when :func:`init` has not been called)."""
    return int(_state["rank"])


def get_world_size() -> int:
    """The number of ranks (1 when :func:`init` has not been called)."""
    return int(_state["world_size"])


def is_main_process() -> bool:
    """True on rank 0 (and in a run without MPI): the rank that logs and writes files."""
    return get_rank() == 0


def _comm(comm: Any = None) -> Any:
    # first use initialises (so get_rank/is_main_process agree with the communicator)
    if _state["comm"] is None:
        init(comm)
    return _state["comm"] if comm is None else comm


def barrier() -> None:
    """Wait until every rank gets here (no-op without MPI)."""
    if _state["comm"] is not None and get_world_size() > 1:
        _state["comm"].Barrier()


def all_reduce_mean(value: float | np.ndarray) -> float | np.ndarray:
    """The mean of a scalar or array over ranks (e.g. a loss to log). Every rank must call."""
    if _state["comm"] is None or get_world_size() == 1:
        return value
    MPI = _mpi()
    arr = np.array(value, dtype=np.float64)
    out = np.empty_like(arr)
    _state["comm"].Allreduce(arr, out, op=MPI.SUM)
    out /= get_world_size()
    return float(out) if np.ndim(value) == 0 else out


def broadcast_object(obj: Any, root: int = 0) -> Any:
    """Rank ``root``'s Python object on every rank (pickled; for small things)."""
    if _state["comm"] is None or get_world_size() == 1:
        return obj
    return _state["comm"].bcast(obj, root=root)


# --- rank-0-only output ------------------------------------------------------------------


def rank_zero_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``fn`` on rank 0 only; other ranks get None without calling it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


@rank_zero_only
def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only (flushed, so lines arrive while mpirun is running)."""
    kwargs.setdefault("flush", True)
    print(*args, **kwargs)


def save_checkpoint(obj: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """``tapegrad.save(obj, path, **kwargs)`` on rank 0, then a barrier.

    Every rank must call it (after it returns the file exists for all of them); replicas are
    identical, so rank 0's copy is the model. The file loads in a single-process run with
    ``tapegrad.load``.
    """
    if is_main_process():
        from ..checkpoint import save

        save(obj, path, **kwargs)
    barrier()
