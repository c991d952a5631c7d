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

The package has four modules; every name is also here:

- :mod:`tapegrad.distributed.group`: MPI set-up (:func:`init`), ranks, small collectives,
  :func:`abort` and :func:`check_same_config`;
- :mod:`tapegrad.distributed.sampling`: :class:`DistributedSampler`;
- :mod:`tapegrad.distributed.sync`: :class:`GradientSync` and :class:`DataParallel`;
- :mod:`tapegrad.distributed.launch`: :func:`trainer_options` for ``tapegrad train
  --distributed``.
"""

from __future__ import annotations

from .group import (
    ConfigMismatchError,
    DistInfo,
    abort,
    all_reduce_mean,
    barrier,
    broadcast_object,
    check_same_config,
    get_rank,
    get_world_size,
    init,
    is_initialized,
    is_main_process,
    print0,
    rank_zero_only,
    save_checkpoint,
)
from .launch import trainer_options
from .sampling import DistributedSampler
from .sync import DataParallel, GradientHook, GradientSync

__all__ = [
    "ConfigMismatchError",
    "DataParallel",
    "DistInfo",
    "DistributedSampler",
    "GradientHook",
    "GradientSync",
    "abort",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "check_same_config",
    "get_rank",
    "get_world_size",
    "init",
    "is_initialized",
    "is_main_process",
    "print0",
    "rank_zero_only",
    "save_checkpoint",
    "trainer_options",
]
