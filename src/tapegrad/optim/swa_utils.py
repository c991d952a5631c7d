"""Weight averaging: :class:`AveragedModel` (SWA's equal average or an exponential moving
average) and :func:`update_bn`, with ``torch.optim.swa_utils``'s names and arguments.

``avg_fn(averaged, current, num_averaged)`` and ``multi_avg_fn(averaged_list,
current_list, num_averaged)`` receive NumPy arrays: the first returns the new average,
the second updates the arrays of ``averaged_list`` in place.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..nn.module import Module
from ..tensor import Tensor

__all__ = ["AveragedModel", "get_ema_avg_fn", "get_ema_multi_avg_fn", "update_bn"]

AvgFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
MultiAvgFn = Callable[[list[np.ndarray], list[np.ndarray], int], None]


def _check_decay(fn: str, decay: float) -> None:
    if not 0 <= decay <= 1:
        raise ValueError(f"{fn}: decay must lie in [0, 1], got {decay}")


def get_ema_avg_fn(decay: float = 0.999) -> AvgFn:
    """``avg_fn`` of an exponential moving average: ``decay * averaged + (1 - decay) * current``."""
    _check_decay("get_ema_avg_fn", decay)

    def ema_update(averaged: np.ndarray, current: np.ndarray, num_averaged: int) -> np.ndarray:
        return decay * averaged + (1 - decay) * current

    return ema_update


def get_ema_multi_avg_fn(decay: float = 0.999) -> MultiAvgFn:
    """``multi_avg_fn`` of an exponential moving average (updates the averages in place)."""
    _check_decay("get_ema_multi_avg_fn", decay)

    def ema_update(averaged: list[np.ndarray], current: list[np.ndarray], n: int) -> None:
        for a, c in zip(averaged, current):
            a += (c - a) * (1 - decay)

    return ema_update


class AveragedModel(Module):
    """A copy of ``model`` whose parameters are an average of ``model``'s over time.

    Call :meth:`update_parameters` after each optimiser step (or each epoch). The first call
    copies the weights; later calls average: equal weights (SWA) by default, or ``avg_fn`` /
    ``multi_avg_fn`` (e.g. :func:`get_ema_multi_avg_fn` for an EMA). With ``use_buffers``
    buffers (batch-norm statistics) are averaged too; otherwise they keep the copy's values
    (refresh them with :func:`update_bn`). Calling the averaged model runs the copy.

    State-dict keys are PyTorch's: ``n_averaged`` and ``module.<name>``.

    Parameters
    ----------
    model : Module
        The model being trained.
    device : None or "cpu"
        Accepted for PyTorch compatibility; tapegrad runs on the CPU.
    avg_fn, multi_avg_fn : callable, optional
        The averaging rule (see the module docstring); at most one.
    use_buffers : bool
        Average buffers as well as parameters.
    """

    def __init__(
        self,
        model: Module,
        device: Any = None,
        avg_fn: AvgFn | None = None,
        multi_avg_fn: MultiAvgFn | None = None,
        use_buffers: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"AveragedModel: model must be a Module, got {type(model).__name__}")
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("AveragedModel: give avg_fn or multi_avg_fn, not both")
        if device is not None and str(device) != "cpu":
            raise ValueError(f"AveragedModel: tapegrad runs on the CPU only, got device={device}")
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p._node = None
        self.register_buffer("n_averaged", Tensor(np.array(0, dtype=np.int64)))
        self.avg_fn, self.multi_avg_fn, self.use_buffers = avg_fn, multi_avg_fn, use_buffers

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the averaged copy of the model on the arguments."""
        return self.module(*args, **kwargs)

    def _tensors(self, model: Module) -> list[Tensor]:
        out: list[Tensor] = list(model.parameters())
        if self.use_buffers:
            out += [b for _, b in model.named_buffers()]
        return out

    def update_parameters(self, model: Module) -> None:
        """Fold ``model``'s current weights into the average."""
        mine, theirs = self._tensors(self.module), self._tensors(model)
        if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs)):
            raise ValueError(
                "AveragedModel.update_parameters: model does not have the averaged model's "
                "parameters (count or shapes differ)"
            )
        n = int(self.n_averaged.data)
        if n == 0:
            for a, b in zip(mine, theirs):
                a.data[...] = b.data
        else:
            # integer buffers (batch counters) keep their first value, as in PyTorch
            pairs = [(a, b) for a, b in zip(mine, theirs) if a.dtype.kind == "f"]
            mine, theirs = [a for a, _ in pairs], [b for _, b in pairs]
        if n and self.multi_avg_fn is not None:
            self.multi_avg_fn([a.data for a in mine], [b.data for b in theirs], n)
        elif n:
            for a, b in zip(mine, theirs):
                if self.avg_fn is None:
                    a.data += ((b.data - a.data) / (n + 1)).astype(a.dtype, copy=False)
                else:
                    a.data[...] = self.avg_fn(a.data, b.data.astype(a.dtype, copy=False), n)
        if not self.use_buffers:
            # buffers that are not averaged follow the model (PyTorch keeps them in sync too)
            for (_, a), (_, b) in zip(self.module.named_buffers(), model.named_buffers()):
                if a.shape == b.shape:
                    a.data[...] = b.data
        self.n_averaged.data[...] = n + 1


def update_bn(loader: Iterable[Any], model: Module, device: Any = None) -> None:
    """Recompute batch-norm running statistics with one pass over ``loader``.

    Each item of ``loader`` is an input batch or a tuple/list whose first element is; the
    running means and variances become the cumulative averages over all batches.
    """
    norms = [m for m in model.modules() if getattr(m, "running_mean", None) is not None]
    if not norms:
        return
    momenta = {}
    for m in norms:
        m.reset_running_stats()
        momenta[m] = m.momentum
        m.momentum = None
    was_training = model.training
    model.train()
    with no_grad():
        for batch in loader:
            if isinstance(batch, (list, tuple)):
                batch = batch[0]
            model(batch if isinstance(batch, Tensor) else Tensor(batch))
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)
