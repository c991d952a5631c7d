"""``tapegrad train --distributed``: the options that make a :class:`tapegrad.train.Trainer`
data-parallel (:func:`trainer_options`).
"""

from __future__ import annotations

from typing import Any

from .group import check_same_config, init
from .sync import DataParallel, GradientSync


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
        opts["grad_hook"] = GradientSync()
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
