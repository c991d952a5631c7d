"""Sampling for data-parallel training: :class:`DistributedSampler`, each rank's share of
every epoch, built on the data package's epoch order and sharding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..data.loader import epoch_order, shard_indices
from .group import get_rank, get_world_size


class DistributedSampler:
    """Each rank's share of every epoch: indices into a dataset of ``len(dataset)`` items.

    Every epoch the index order is a permutation drawn from ``(seed, epoch)`` (the same on
    all ranks), and rank ``r`` takes positions ``r, r + world, r + 2*world, ...`` of it, so
    the shards of one epoch are disjoint and together cover the dataset (the order and the
    shares are :func:`tapegrad.data.epoch_order` and :func:`tapegrad.data.shard_indices`,
    which ``DataLoader(rank=, world_size=)`` uses too). Call
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
        order = epoch_order(self.n, self.seed, self.epoch) if self.shuffle else np.arange(self.n)
        return shard_indices(order, self.rank, self.num_replicas, self.drop_last)

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
