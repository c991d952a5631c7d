"""``tapegrad.utils.data``: PyTorch's ``Dataset``, ``TensorDataset`` and ``DataLoader`` for
scripts written against ``torch.utils.data``.

A dataset is anything with ``__getitem__(i)`` and ``__len__()``; the loader draws indices
(shuffled per epoch from ``tapegrad.manual_seed``'s generator, or from ``generator``/
``seed``), fetches the items and merges them with ``collate_fn`` (default: stack arrays,
Tensors and numbers into Tensors, recursively through tuples, lists and dicts). A
:class:`TensorDataset` is indexed a whole batch at a time, without a per-item loop.
Batches are loaded in the calling process (``num_workers=0``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..tensor import Tensor

__all__ = ["DataLoader", "Dataset", "TensorDataset", "default_collate"]


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
        Only 0: batches are loaded in the calling process.
    seed : int, optional
        Seed of the shuffling order (epoch ``e`` uses ``(seed, e)``); by default drawn once
        from tapegrad's generator (``tapegrad.manual_seed``).

    Raises
    ------
    ValueError
        A non-positive ``batch_size`` or ``num_workers`` other than 0.
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
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"DataLoader: dataset must define __getitem__ and __len__, got "
                f"{type(dataset).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if num_workers != 0:
            raise ValueError(
                f"DataLoader: num_workers={num_workers} is not supported; tapegrad.utils.data "
                "loads batches in the calling process (num_workers=0)"
            )
        if sampler is not None or batch_sampler is not None:
            raise ValueError("DataLoader: sampler and batch_sampler are not supported; use shuffle")
        unknown = sorted(set(kwargs) - {"persistent_workers", "prefetch_factor", "timeout"})
        if unknown:
            raise TypeError(f"DataLoader: unexpected keyword arguments {unknown}")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.collate_fn = collate_fn
        if seed is None:
            from ..creation import generator

            seed = int(generator().integers(2**62))
        self.seed, self.epoch = int(seed), 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(n)
        else:
            order = np.arange(n)
        self.epoch += 1
        whole = isinstance(self.dataset, TensorDataset) and self.collate_fn is None
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if whole:
                yield self.dataset[idx]  # one fancy index per tensor, no per-item loop
                continue
            items = [self.dataset[int(i)] for i in idx]
            yield (self.collate_fn or default_collate)(items)
