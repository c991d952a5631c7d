"""``tapegrad.utils.data``: PyTorch's ``Dataset``, ``TensorDataset`` and ``DataLoader`` for
scripts written against ``torch.utils.data``.

A dataset is anything with ``__getitem__(i)`` and ``__len__()``; the loader draws indices
(shuffled per epoch from ``tapegrad.manual_seed``'s generator, or from ``generator``/
``seed``), fetches the items and merges them with ``collate_fn`` (default: stack arrays,
Tensors and numbers into Tensors, recursively through tuples, lists and dicts). A
:class:`TensorDataset` is indexed a whole batch at a time, without a per-item loop.
With ``num_workers=N > 0`` batches are loaded (items fetched, augmented and collated) in
``N`` worker processes, ``prefetch_factor`` batches ahead per worker, and come back in
order. Every item's random transforms draw from a generator seeded by
``(seed, epoch, index)`` (:func:`tapegrad.data.transforms.sample_generator`), so the batches
are the same whatever ``num_workers`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..tensor import Tensor
from ._workers import WorkerInfo, WorkerPool, fetch_batch, get_worker_info

__all__ = [
    "DataLoader",
    "Dataset",
    "TensorDataset",
    "WorkerInfo",
    "default_collate",
    "get_worker_info",
]


class Dataset:
    """Base class of map-style datasets: subclasses define ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.__getitem__ is not defined")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__}.__len__ is not defined")


class TensorDataset(Dataset):
    """Tensors (or arrays) sharing their first dimension; item ``i`` is the tuple of rows
    ``i`` (as Tensors)."""

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(np.asarray(t)) for t in tensors)
        n = self.tensors[0].shape[0] if self.tensors[0].ndim else -1
        for i, t in enumerate(self.tensors):
            if t.ndim == 0 or t.shape[0] != n:
                raise ValueError(
                    f"TensorDataset: tensor {i} has shape {t.shape}; every tensor needs the "
                    f"first dimension of tensor 0 ({self.tensors[0].shape})"
                )

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(Tensor._from_op(t.data[index]) for t in self.tensors)

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])


def default_collate(batch: Sequence[Any]) -> Any:
    """Merge a list of items into a batch: arrays, Tensors and numbers are stacked into a
    Tensor; tuples, lists and dicts are merged field by field."""
    first = batch[0]
    if isinstance(first, Tensor) or isinstance(first, (np.ndarray, np.generic, int, float, bool)):
        arrays = [np.asarray(b.data if isinstance(b, Tensor) else b) for b in batch]
        arr = np.stack(arrays)
        if arr.dtype == np.float64 and not isinstance(first, (Tensor, np.ndarray, np.generic)):
            arr = arr.astype(np.float32)  # Python floats: PyTorch's default float dtype
        return Tensor._from_op(arr)
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(b) != len(first) for b in batch):
            raise ValueError("default_collate: items of a batch have different lengths")
        return type(first)(default_collate(list(col)) for col in zip(*batch))
    raise TypeError(
        f"default_collate: cannot batch items of type {type(first).__name__}; pass collate_fn"
    )


class DataLoader:
    """Batches of a dataset, PyTorch's arguments.

    Parameters
    ----------
    dataset : Dataset
        Anything with ``__getitem__`` and ``__len__``.
    batch_size : int, default 1
    shuffle : bool, default False
        A new order every epoch.
    drop_last : bool, default False
        Drop the last short batch.
    collate_fn : callable, optional
        Merges a list of items into a batch (default :func:`default_collate`).
    num_workers : int, default 0
        0 loads batches in the calling process; ``N > 0`` loads them in ``N`` worker
        processes (forked where the platform allows, else spawned: then the dataset,
        ``collate_fn`` and ``worker_init_fn`` must be picklable). An exception in a worker
        is raised again here, naming the dataset index; the workers are stopped when an
        epoch ends, on any error, on Ctrl-C and when the iterator is dropped.
    prefetch_factor : int, optional
        Batches loaded ahead per worker (default 2; only with ``num_workers > 0``).
    persistent_workers : bool, default False
        Keep the worker processes between epochs (only with ``num_workers > 0``); they stop
        when the loader is garbage-collected or at exit.
    timeout : float, default 0
        Seconds to wait for a batch from the workers before raising ``RuntimeError``
        (0: no limit; a worker that dies is reported at once either way).
    worker_init_fn : callable, optional
        Called with the worker id in each worker process before it loads anything.
    multiprocessing_context : str or context, optional
        ``"fork"``, ``"spawn"`` or ``"forkserver"`` (default: ``"fork"`` where available).
    seed : int, optional
        Seed of the shuffling order (epoch ``e`` uses ``(seed, e)``) and of each item's
        augmentation (item ``i`` of epoch ``e`` uses ``(seed, e, i)``); by default drawn once
        from tapegrad's generator (``tapegrad.manual_seed``).

    Raises
    ------
    ValueError
        A non-positive ``batch_size``, a negative ``num_workers`` or ``timeout``, or
        ``prefetch_factor``/``persistent_workers`` with ``num_workers=0``.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        seed: int | None = None,
    ) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"DataLoader: dataset must define __getitem__ and __len__, got "
                f"{type(dataset).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be an int >= 0, got {num_workers!r}")
        if num_workers == 0 and (prefetch_factor is not None or persistent_workers):
            raise ValueError(
                "DataLoader: prefetch_factor and persistent_workers need num_workers > 0"
            )
        if prefetch_factor is not None and (
            isinstance(prefetch_factor, bool)
            or not isinstance(prefetch_factor, int)
            or prefetch_factor < 1
        ):
            raise ValueError(
                f"DataLoader: prefetch_factor must be a positive int, got {prefetch_factor!r}"
            )
        if not timeout >= 0:
            raise ValueError(f"DataLoader: timeout must be >= 0, got {timeout!r}")
        if sampler is not None or batch_sampler is not None:
            raise ValueError("DataLoader: sampler and batch_sampler are not supported; use shuffle")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
        self.persistent_workers = bool(persistent_workers)
        self.timeout = float(timeout)
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        if seed is None:
            from ..creation import generator

            seed = int(generator().integers(2**62))
        # any int, as PyTorch; generators are seeded with non-negative integers
        self.seed, self.epoch = int(seed) % 2**64, 0
        self._pool: WorkerPool | None = None

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches(self) -> tuple[int, list[np.ndarray]]:
        n = len(self.dataset)
        epoch = self.epoch
        if self.shuffle:
            order = np.random.default_rng((self.seed, epoch)).permutation(n)
        else:
            order = np.arange(n)
        self.epoch += 1
        bs = self.batch_size
        return epoch, [order[b * bs : (b + 1) * bs] for b in range(len(self))]

    def _whole(self) -> bool:
        return isinstance(self.dataset, TensorDataset) and self.collate_fn is None

    def __iter__(self) -> Iterator[Any]:
        epoch, batches = self._batches()
        if self.num_workers == 0:
            return self._in_process(epoch, batches)
        pool = self._pool
        if pool is None or not pool.usable():
            pool = WorkerPool(
                self.dataset,
                self.collate_fn or default_collate,
                self._whole(),
                self.seed,
                self.num_workers,
                self.worker_init_fn,
                self.multiprocessing_context,
            )
            self._pool = pool if self.persistent_workers else None
        return pool.run(
            epoch,
            batches,
            self.prefetch_factor or 2,
            self.timeout,
            close_at_end=not self.persistent_workers,
        )

    def _in_process(self, epoch: int, batches: list[np.ndarray]) -> Iterator[Any]:
        collate = self.collate_fn or default_collate
        whole = self._whole()
        for idx in batches:
            yield fetch_batch(self.dataset, idx, collate, whole, self.seed, epoch)

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown()
