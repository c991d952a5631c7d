"""Batches of in-memory arrays: :class:`TensorDataset`, :class:`DataLoader` and the
per-rank sharding of an epoch that data-parallel training uses (:func:`shard_indices`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of ``n`` items for one epoch: a permutation drawn from
    ``(seed, epoch)``, the same on every rank and in every run.

    Returns
    -------
    numpy.ndarray
        A permutation of ``range(n)``, int64, shape (n,).
    """
    return np.random.default_rng((seed, epoch)).permutation(n)


def shard_indices(
    order: np.ndarray, rank: int, world_size: int, drop_last: bool = False
) -> np.ndarray:
    """Rank ``rank``'s share of an epoch's ``order``: positions ``rank, rank + world_size,
    rank + 2 * world_size, ...``, the same count on every rank.

    With ``drop_last=False`` an order whose length is not a multiple of ``world_size`` is
    padded by repeating its first items, so every rank gets ``ceil(n / world_size)`` and
    together the shards cover every item; with ``drop_last=True`` its last
    ``n % world_size`` items are left out instead and the shards are disjoint. Equal counts
    keep the ranks' per-step collectives in lockstep.

    Parameters
    ----------
    order : numpy.ndarray
        The epoch's order of item indices, shape (n,).
    rank, world_size : int
        This rank and the number of ranks, ``0 <= rank < world_size``.
    drop_last : bool
        Leave the remainder out instead of padding.

    Returns
    -------
    numpy.ndarray
        The indices of this rank's items, shape (n // world_size,) or
        (ceil(n / world_size),), int64.
    """
    n = len(order)
    per_rank = n // world_size if drop_last else -(-n // world_size)
    total = per_rank * world_size
    # np.resize repeats from the start: the padding case (and a cut or no-op otherwise)
    return np.resize(order, total)[rank:total:world_size].astype(np.int64, copy=False)


class TensorDataset:
    """Indexable pairs of arrays sharing the first dimension (like torch's TensorDataset).

    ``transform`` (optional) maps a batch of images (N, C, H, W) to a batch, applied by the
    DataLoader per batch with its own generator so augmentation is reproducible.
    """

    def __init__(self, *arrays: Any, transform: Callable | None = None) -> None:
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        self.arrays = [np.asarray(getattr(a, "data", a)) for a in arrays]
        n = self.arrays[0].shape[0]
        for i, a in enumerate(self.arrays):
            if a.shape[0] != n:
                raise ValueError(
                    f"TensorDataset: array {i} has {a.shape[0]} rows, array 0 has {n} "
                    f"(shapes {[x.shape for x in self.arrays]})"
                )
        self.transform = transform

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, idx: Any) -> tuple[np.ndarray, ...]:
        return tuple(a[idx] for a in self.arrays)


class DataLoader:
    """Batches of a :class:`TensorDataset` as NumPy arrays, optionally shuffled by seed.

    Each epoch's order comes from ``seed`` and the epoch number (``set_epoch``), so a
    resumed run sees the same batches as an uninterrupted one. ``drop_last`` drops the
    final short batch. With ``world_size > 1`` each rank takes every ``world_size``-th
    sample of the epoch's order from offset ``rank`` (all ranks get the same count), as
    data-parallel training needs.
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"DataLoader: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose shuffled order the next iteration uses (as after ``epoch``
        passes).
        """
        self.epoch = int(epoch)

    def _num_samples(self) -> int:
        return len(self.dataset) // self.world_size

    def __len__(self) -> int:
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        n = self._num_samples()
        # the generator draws the order first, then the epoch's augmentation
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.dataset)) if self.shuffle else None
        if self.world_size > 1:
            base = order if order is not None else np.arange(len(self.dataset))
            order = shard_indices(base, self.rank, self.world_size, drop_last=True)
        transform = getattr(self.dataset, "transform", None)
        self.epoch += 1
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            # a contiguous slice is a view (no copy); shuffled batches gather once
            idx = slice(lo, hi) if order is None else order[lo:hi]
            batch = list(self.dataset[idx])
            if transform is not None:
                batch[0] = transform(batch[0], rng)
            yield tuple(batch)
