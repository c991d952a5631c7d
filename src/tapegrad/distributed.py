"""Data-parallel training over MPI (``mpi4py``): one process ("rank") per model replica.

Every rank holds a full copy of the model, trains on its own shard of each global batch,
and before each optimizer step the gradients are averaged across ranks so all replicas
take the same step and stay identical::

    from tapegrad import distributed as dist

    rank, world = dist.init()                        # MPI_Init; threads per rank; abort on error
    model = dist.DataParallel(zoo.lenet5())          # broadcast rank 0's weights to everyone
    opt = optim.SGD(model.parameters(), lr=0.05)
    sampler = dist.DistributedSampler(len(train_set), seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)                     # new shuffle, disjoint shard per rank
        loader = DataLoader(sampler.subset(train_set), batch_size=global_batch // world)
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(tg.tensor(x)), tg.tensor(y)).backward()
            model.sync_gradients()                   # one bucketed Allreduce, then divide
            opt.step()
        dist.save_checkpoint(model.state_dict(), "ckpt.safetensors")   # rank 0 writes

    mpirun -n 2 python train.py

Batch-norm running statistics (and any other floating buffer) are kept **local to each
rank** by default: each replica normalises with its own shard's statistics, as PyTorch's
``DistributedDataParallel`` without ``SyncBatchNorm``. ``DataParallel(..., sync_buffers=True)``
averages them across ranks on every step (inside the same Allreduce as the gradients);
``model.sync_buffers()`` does it once, e.g. before evaluating or saving.

``mpi4py`` is imported only when a function here needs MPI: ``import tapegrad.distributed``
and the sampler work without it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, NoReturn

import numpy as np

from .nn.module import Module, Parameter
from .tensor import Tensor

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
    # needs and a 0.03 ms Allreduce takes 40+ ms. Yielding costs next to nothing on an idle
    # core. Read at MPI_Init (the import below); OMPI_MCA_mpi_yield_when_idle=0 restores
    # busy polling.
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
        from .kernels import set_num_threads

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
        from .checkpoint import save

        save(obj, path, **kwargs)
    barrier()


# --- sampling --------------------------------------------------------------------------


class DistributedSampler:
    """Each rank's share of every epoch: indices into a dataset of ``len(dataset)`` items.

    Every epoch the index order is a permutation drawn from ``(seed, epoch)`` (the same on
    all ranks), and rank ``r`` takes positions ``r, r + world, r + 2*world, ...`` of it, so
    the shards of one epoch are disjoint and together cover the dataset. Call
    :meth:`set_epoch` at the start of each epoch to reshuffle.

    When ``len(dataset)`` is not a multiple of the world size, ``drop_last=False`` (default)
    repeats the first few indices of the permutation so every rank gets
    ``ceil(n / world)`` items (equal step counts keep the per-step Allreduce in lockstep);
    ``drop_last=True`` drops the last ``n % world`` of them instead (strictly disjoint).

    ``dataset``: a length or anything with ``len()``. ``num_replicas``/``rank`` default to
    the values from :func:`init` (1 and 0 without MPI).
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        n = dataset if isinstance(dataset, (int, np.integer)) else len(dataset)
        world = get_world_size() if num_replicas is None else num_replicas
        r = get_rank() if rank is None else rank
        if not isinstance(world, (int, np.integer)) or world < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {world!r}")
        if not isinstance(r, (int, np.integer)) or not 0 <= r < world:
            raise ValueError(
                f"DistributedSampler: rank must lie in [0, {world - 1}] for num_replicas="
                f"{world}, got {r!r}"
            )
        if n < 0 or (drop_last and n < world) or n == 0:
            raise ValueError(
                f"DistributedSampler: dataset of {n} items is too small for {world} ranks "
                f"(drop_last={drop_last})"
            )
        self.n, self.num_replicas, self.rank = int(n), int(world), int(r)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0
        self.num_samples = self.n // world if drop_last else -(-self.n // world)
        self.total_size = self.num_samples * world

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation :meth:`indices` returns."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, shape (num_samples,), int64."""
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        else:
            order = np.arange(self.n)
        # np.resize repeats from the start: the padding case (and a no-op otherwise)
        order = np.resize(order, self.total_size)
        return order[self.rank : self.total_size : self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def subset(self, dataset: Any) -> _Shard:
        """``dataset`` seen through this sampler: item ``i`` is ``dataset[indices()[i]]``.

        The view follows :meth:`set_epoch`; hand it to an unshuffled DataLoader.
        """
        return _Shard(dataset, self)


class _Shard:
    """A rank's view of a dataset; indices are looked up per epoch from the sampler."""

    def __init__(self, dataset: Any, sampler: DistributedSampler) -> None:
        if len(dataset) != sampler.n:
            raise ValueError(
                f"DistributedSampler.subset: dataset has {len(dataset)} items, "
                f"the sampler was built for {sampler.n}"
            )
        self.dataset, self.sampler = dataset, sampler
        self.transform = getattr(dataset, "transform", None)
        self._cache: tuple[int, np.ndarray] | None = None

    def _indices(self) -> np.ndarray:
        if self._cache is None or self._cache[0] != self.sampler.epoch:
            self._cache = (self.sampler.epoch, self.sampler.indices())
        return self._cache[1]

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, idx: Any) -> Any:
        return self.dataset[self._indices()[idx]]


# --- gradient averaging --------------------------------------------------------------------


class _Bucket:
    """One flat contiguous buffer: gradient slices first, then (optionally) buffer slices."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.grads: list[tuple[Parameter, int, int]] = []
        self.buffers: list[tuple[Tensor, int, int]] = []
        self.size = 0
        self.flat = np.empty(0, dtype=dtype)

    def add(self, t: Tensor, kind: str) -> None:
        (self.grads if kind == "grad" else self.buffers).append((t, self.size, t.data.size))
        self.size += t.data.size

    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


class DataParallel(Module):
    """Wrap a model for data-parallel training: identical replicas, averaged gradients.

    ``module``: the model (the same architecture on every rank).
    ``bucket_cap_mb``: gradients are packed into flat contiguous buffers of at most this
    size (one per dtype at least) and each buffer is averaged with a single ``Allreduce``;
    the default 25 MB puts small and medium CNNs in one buffer, i.e. one Allreduce per step.
    ``broadcast_parameters``: copy rank 0's parameters and buffers to every rank now, so
    replicas start identical whatever their local random initialisation.
    ``sync_buffers``: average floating buffers (batch-norm running mean/var) across ranks
    in every :meth:`sync_gradients` call. Default False: each rank keeps its own statistics.
    ``comm``: communicator (default: the one from :func:`init`, initialising MPI if needed).

    Call :meth:`sync_gradients` after ``backward()`` and before ``optimizer.step()``, or
    call :meth:`hook_optimizer` once to have ``optimizer.step()`` do it. Parameters, buffers
    and ``state_dict`` keys are the wrapped model's own (no ``module.`` prefix), so a state
    dict saved from a DataParallel loads into the bare model.

    Timing: ``allreduce_seconds`` (cumulative), ``last_allreduce_seconds``,
    ``allreduce_calls`` and ``steps`` count the collective work.
    """

    def __init__(
        self,
        module: Module,
        bucket_cap_mb: float = 25.0,
        broadcast_parameters: bool = True,
        sync_buffers: bool = False,
        comm: Any = None,
    ) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel: module must be a tapegrad.nn.Module, got {module!r}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"DataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        super().__init__()
        self.module = module
        self.comm = _comm(comm)
        self.world_size = self.comm.Get_size()
        self.sync_buffers_every_step = sync_buffers
        self._check_same_model()
        if broadcast_parameters:
            self.broadcast_state(root=0)
        params = [p for p in module.parameters() if p.requires_grad]
        bufs = self._float_buffers() if sync_buffers else []
        self.buckets = _make_buckets(params, bufs, int(bucket_cap_mb * 2**20))
        self.allreduce_seconds = 0.0
        self.last_allreduce_seconds = 0.0
        self.allreduce_calls = 0
        self.steps = 0

    # the wrapper is transparent: traversal (parameters, buffers, state_dict, train/eval)
    # goes straight to the wrapped model, so names carry no "module." prefix
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """The wrapped model's modules, with its own names (no ``module.`` prefix)."""
        yield from self.module.named_modules(prefix)

    def train(self, mode: bool = True) -> DataParallel:
        """Set the wrapped model's training mode (``mode=True``) or eval mode; returns self."""
        self.module.train(mode)
        object.__setattr__(self, "training", mode)
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the wrapped model on the arguments (this rank's share of the batch)."""
        return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        """The world size and the gradient buckets' sizes, as shown in the repr."""
        sizes = ", ".join(f"{b.nbytes() / 2**20:.2f} MB" for b in self.buckets)
        return f"world_size={self.world_size}, buckets=[{sizes}]"

    def _float_buffers(self) -> list[Tensor]:
        return [b for _, b in self.module.named_buffers() if b.data.dtype.kind == "f"]

    def _check_same_model(self) -> None:
        # a mismatch would make the flat buffers differ in length and the Allreduce
        # mix unrelated numbers (or hang), so compare the layouts first
        layout = [(k, t.shape, str(t.dtype)) for k, t in self.module._state_tensors()]
        layouts = self.comm.allgather(layout)
        for r, other in enumerate(layouts):
            if other != layout:
                raise ValueError(
                    f"DataParallel: rank {self.comm.Get_rank()} and rank {r} hold different "
                    f"models; parameters/buffers (name, shape, dtype) differ: "
                    f"{_first_difference(layout, other)}"
                )

    def broadcast_state(self, root: int = 0) -> None:
        """Copy rank ``root``'s parameters and buffers into every rank's model (in place)."""
        groups: dict[str, list[Tensor]] = {}
        for _, t in self.module._state_tensors():
            groups.setdefault(t.data.dtype.str, []).append(t)
        for tensors in groups.values():
            flat = np.concatenate([t.data.reshape(-1) for t in tensors])
            self.comm.Bcast(flat, root=root)
            off = 0
            for t in tensors:
                t.data[...] = flat[off : off + t.data.size].reshape(t.shape)
                off += t.data.size

    def sync_gradients(self) -> None:
        """Average every parameter's ``grad`` over ranks: pack, one Allreduce per bucket, unpack.

        A parameter without a gradient on some rank counts as a zero gradient there; after
        the call every trainable parameter has the averaged gradient on every rank.
        """
        dt = _allreduce_mean(self.comm, self.buckets)
        self.allreduce_calls += len(self.buckets)
        self.last_allreduce_seconds = dt
        self.allreduce_seconds += dt
        self.steps += 1

    def sync_buffers(self) -> None:
        """Average floating buffers (batch-norm running stats) across ranks once, in place.

        The running variance becomes the mean of the ranks' variances (the spread between
        the ranks' means is not added): close to, not equal to, the global statistic.
        """
        MPI = _mpi()
        groups: dict[str, list[Tensor]] = {}
        for t in self._float_buffers():
            groups.setdefault(t.data.dtype.str, []).append(t)
        for tensors in groups.values():
            flat = np.concatenate([t.data.reshape(-1) for t in tensors])
            self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            flat /= self.world_size
            off = 0
            for t in tensors:
                t.data[...] = flat[off : off + t.data.size].reshape(t.shape)
                off += t.data.size

    def hook_optimizer(self, optimizer: Any) -> Any:
        """Make ``optimizer.step()`` call :meth:`sync_gradients` first; returns the optimizer."""
        step = optimizer.step

        @functools.wraps(step)
        def synced_step(*args: Any, **kwargs: Any) -> Any:
            self.sync_gradients()
            return step(*args, **kwargs)

        optimizer.step = synced_step
        return optimizer


# --- `tapegrad train --distributed` ---------------------------------------------------


class GradientHook:
    """``hook(params)``: average the given parameters' gradients across ranks.

    For training loops that own the model and call a hook after ``backward()`` (the
    ``grad_hook`` of :class:`tapegrad.train.Trainer`). ``params`` given here are broadcast
    from rank 0 at once, so replicas start equal; without them the first call packs the
    parameters it receives and broadcasts them then -- after the first backward, so the
    replicas must already start equal (the same seed on every rank). Each call does one
    Allreduce per bucket, like :meth:`DataParallel.sync_gradients`.
    """

    def __init__(
        self, params: list[Any] | None = None, comm: Any = None, bucket_cap_mb: float = 25.0
    ) -> None:
        self.comm = _comm(comm)
        self.cap = int(bucket_cap_mb * 2**20)
        self.buckets: list[_Bucket] | None = None
        self.last_allreduce_seconds = 0.0
        self.allreduce_seconds = 0.0
        if params is not None:
            self._setup(list(params))

    def _setup(self, params: list[Any]) -> None:
        params = [p for p in params if p.requires_grad]
        for p in params:
            buf = np.ascontiguousarray(p.data)  # MPI needs contiguous memory
            self.comm.Bcast(buf, root=0)
            p.data[...] = buf
        self.buckets = _make_buckets(params, [], self.cap)

    def __call__(self, params: list[Any]) -> None:
        if self.buckets is None:
            self._setup(list(params))
        assert self.buckets is not None
        dt = _allreduce_mean(self.comm, self.buckets)
        self.last_allreduce_seconds = dt
        self.allreduce_seconds += dt


def trainer_options(cfg: Any = None) -> dict[str, Any]:
    """Keyword arguments that make :class:`tapegrad.train.Trainer` data-parallel.

    Initialises MPI (:func:`init`; ``cfg.threads`` threads per rank if given) and returns
    ``rank``, ``world_size``, ``is_main`` (rank 0 alone logs, writes metrics, checkpoints
    and plots) and ``grad_hook``. With the run's ``TrainConfig`` it also builds the model
    from ``cfg.seed`` and wraps it in :class:`DataParallel` (rank 0's weights broadcast,
    batch-norm statistics local per rank), and turns ``cfg.batch_size`` -- the global
    batch -- into the per-rank batch ``batch_size // world_size`` (the global batch is
    kept in ``cfg.extra["global_batch_size"]``). Each rank's epoch shard is the
    DataLoader's ``rank``/``world_size`` split, the same indices as
    ``DistributedSampler(n, drop_last=True)`` with the run's seed. ``check_config`` is
    :func:`check_same_config`: the Trainer hands it the run's fingerprint (model, epochs,
    global batch, dataset lengths, seed, ...) once the data is loaded, so ranks started
    differently stop at once with the difference named instead of waiting on each other.
    """
    rank, world = init(num_threads=getattr(cfg, "threads", None) or None)
    opts: dict[str, Any] = {"rank": rank, "world_size": world, "is_main": rank == 0}
    if cfg is None:
        opts["grad_hook"] = GradientHook()
        return opts

    global_batch = int(cfg.batch_size)
    if global_batch % world:
        raise ValueError(
            f"tapegrad train --distributed: --batch-size {global_batch} is the global batch "
            f"and must be a multiple of the {world} ranks"
        )
    cfg.batch_size = global_batch // world
    cfg.extra.update(global_batch_size=global_batch, world_size=world)
    wrapped: list[DataParallel] = []

    def wrap(model: Any) -> DataParallel:
        # the Trainer builds the model from the data's channels and size, then wraps it
        wrapped.append(DataParallel(model))
        return wrapped[0]

    opts["wrap_model"] = wrap
    opts["check_config"] = check_same_config
    opts["grad_hook"] = lambda params: wrapped[0].sync_gradients()
    return opts


def _allreduce_mean(comm: Any, buckets: list[_Bucket]) -> float:
    """Pack grads (and buffers) into the buckets, Allreduce each, divide, unpack.

    Returns the seconds spent inside the Allreduce calls (waiting for slower ranks included).
    """
    MPI = _mpi()
    inv = 1.0 / comm.Get_size()
    for b in buckets:
        for p, off, n in b.grads:
            g = p._grad
            if g is None:
                b.flat[off : off + n] = 0
            else:
                b.flat[off : off + n] = g.reshape(-1)
        for t, off, n in b.buffers:
            b.flat[off : off + n] = t.data.reshape(-1)
    t0 = time.perf_counter()
    for b in buckets:
        comm.Allreduce(MPI.IN_PLACE, b.flat, op=MPI.SUM)
    dt = time.perf_counter() - t0
    for b in buckets:
        b.flat *= b.dtype.type(inv)
        for p, off, n in b.grads:
            # the grad becomes a view of the bucket: no copy; the next pack reads
            # it before overwriting the same memory
            p._grad = b.flat[off : off + n].reshape(p.shape)
        for t, off, n in b.buffers:
            t.data[...] = b.flat[off : off + n].reshape(t.shape)
    return dt


def _make_buckets(params: list[Parameter], buffers: list[Tensor], cap_bytes: int) -> list[_Bucket]:
    """Pack tensors into per-dtype buckets, starting a new one when ``cap_bytes`` is passed."""
    open_: dict[str, _Bucket] = {}
    done: list[_Bucket] = []
    for kind, tensors in (("grad", params), ("buffer", buffers)):
        for t in tensors:
            key = t.data.dtype.str
            b = open_.get(key)
            if b is None or (b.size and b.nbytes() + t.data.nbytes > cap_bytes):
                if b is not None:
                    done.append(b)
                b = open_[key] = _Bucket(t.data.dtype)
            b.add(t, kind)
    done.extend(open_.values())
    for b in done:
        b.flat = np.empty(b.size, dtype=b.dtype)
    return done


def _first_difference(a: list, b: list) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"{x} vs {y}"
    return f"{len(a)} vs {len(b)} entries"
