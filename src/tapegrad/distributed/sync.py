"""Gradient synchronisation: :class:`GradientSync` averages parameters' gradients over the
ranks in bucketed Allreduces; :class:`DataParallel` wraps a model around one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..nn.module import Module, Parameter
from ..tensor import Tensor
from .group import _comm, _mpi


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


class GradientSync:
    """Average parameters' gradients over the ranks: ``sync()`` (or ``sync(params)``).

    The one gradient-synchronisation API: :class:`DataParallel` holds one, and training
    loops that own the model call one after ``backward()`` (the ``grad_hook`` of
    :class:`tapegrad.train.Trainer`). Gradients are packed into flat contiguous buckets of
    at most ``bucket_cap_mb`` (one per dtype at least), each averaged with one
    ``Allreduce``; a parameter without a gradient on some rank counts as zero there, and
    after the call every parameter holds the averaged gradient on every rank.

    Parameters
    ----------
    params : list of Parameter, optional
        The parameters to synchronise (those with ``requires_grad``). Without them, the
        first call packs the parameters it receives.
    comm : optional
        The communicator (default: the one from :func:`tapegrad.distributed.init`,
        initialising MPI if needed).
    bucket_cap_mb : float
        The largest bucket, in MiB.
    buffers : list of Tensor
        Floating buffers (batch-norm statistics) averaged in the same Allreduces.
    broadcast : bool
        Copy rank 0's parameters to every rank when they are packed, so replicas start
        equal (without ``params`` this happens at the first call, after the first
        backward: the replicas must then already start equal).

    Attributes
    ----------
    buckets : list
        The packed buckets (``.size`` elements each), None until parameters are known.
    allreduce_seconds, last_allreduce_seconds : float
        Time inside the Allreduces (waiting for slower ranks included), in total and in
        the last call.
    allreduce_calls, steps : int
        Allreduces issued and calls made.
    """

    def __init__(
        self,
        params: list[Any] | None = None,
        comm: Any = None,
        bucket_cap_mb: float = 25.0,
        buffers: list[Tensor] | None = None,
        broadcast: bool = True,
    ) -> None:
        if not bucket_cap_mb > 0:
            raise ValueError(f"GradientSync: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.comm = _comm(comm)
        self.cap = int(bucket_cap_mb * 2**20)
        self.broadcast = broadcast
        self._buffers = list(buffers or [])
        self.buckets: list[_Bucket] | None = None
        self.last_allreduce_seconds = 0.0
        self.allreduce_seconds = 0.0
        self.allreduce_calls = 0
        self.steps = 0
        if params is not None:
            self._setup(list(params))

    def _setup(self, params: list[Any]) -> None:
        params = [p for p in params if p.requires_grad]
        if self.broadcast:
            for p in params:
                buf = np.ascontiguousarray(p.data)  # MPI needs contiguous memory
                self.comm.Bcast(buf, root=0)
                p.data[...] = buf
        self.buckets = _make_buckets(params, self._buffers, self.cap)

    def __call__(self, params: list[Any] | None = None) -> None:
        """Average the gradients (and buffers) over the ranks, in place; every rank calls.

        ``params`` is only read the first time, when none were given to the constructor.
        """
        if self.buckets is None:
            if params is None:
                raise ValueError("GradientSync: no parameters given, at construction or here")
            self._setup(list(params))
        assert self.buckets is not None
        dt = _allreduce_mean(self.comm, self.buckets)
        self.last_allreduce_seconds = dt
        self.allreduce_seconds += dt
        self.allreduce_calls += len(self.buckets)
        self.steps += 1

    sync = __call__


#: The name :class:`GradientSync` had as the Trainer's hook; the same class.
GradientHook = GradientSync


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
        self.grad_sync = GradientSync(
            list(module.parameters()),
            self.comm,
            bucket_cap_mb,
            buffers=self._float_buffers() if sync_buffers else [],
            broadcast=False,  # broadcast_state above already copied rank 0's state
        )

    @property
    def buckets(self) -> list[_Bucket]:
        """The gradient buckets (``.size`` elements each), one Allreduce per bucket."""
        return self.grad_sync.buckets or []

    @property
    def allreduce_seconds(self) -> float:
        """Seconds inside the gradient Allreduces so far (waiting for other ranks included)."""
        return self.grad_sync.allreduce_seconds

    @property
    def last_allreduce_seconds(self) -> float:
        """Seconds inside the last :meth:`sync_gradients` call's Allreduces."""
        return self.grad_sync.last_allreduce_seconds

    @property
    def allreduce_calls(self) -> int:
        """Allreduces issued by :meth:`sync_gradients` so far."""
        return self.grad_sync.allreduce_calls

    @property
    def steps(self) -> int:
        """Calls of :meth:`sync_gradients` so far."""
        return self.grad_sync.steps

    # the wrapper is transparent: traversal (parameters, buffers, state_dict, train/eval)
    # goes straight to the wrapped model, so names carry no "module." prefix
    def named_modules(
        self, memo: Any = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """The wrapped model's modules, with its own names (no ``module.`` prefix)."""
        yield from self.module.named_modules(memo, prefix, remove_duplicate)

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
        self.grad_sync()

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


def _allreduce_mean(comm: Any, buckets: list[_Bucket]) -> float:
    """Pack grads (and buffers) into the buckets, Allreduce each, divide, unpack.

    Returns the seconds spent inside the Allreduce calls (waiting for slower ranks included).
    """
    MPI = _mpi()
    inv = 1.0 / comm.Get_size()
    for b in buckets:
        for p, off, n in b.grads:
            g = p.grad_data
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
            p.grad_data = b.flat[off : off + n].reshape(p.shape)
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
