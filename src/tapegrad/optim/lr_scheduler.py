"""Learning-rate schedulers with PyTorch's names, arguments and ``step()`` semantics.

A scheduler sets each parameter group's ``"lr"`` at construction (its value for step 0)
and on every ``step()``; ``last_epoch`` counts the steps taken (whether a step is an epoch
or a batch is the caller's choice). ``state_dict()``/``load_state_dict()`` make ``--resume`` exact.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import Optimizer

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearWarmup",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "StepLR",
]


class LRScheduler:
    """Base class: sets every parameter group's ``"lr"`` from its ``"initial_lr"``.

    Subclasses give the rate of one group from its base rate (:meth:`_lr`); ``get_lr()``
    returns the list over groups, ``get_last_lr()`` the rates in force.

    Raises
    ------
    TypeError
        ``optimizer`` is not a tapegrad Optimizer.
    ValueError
        ``last_epoch`` is not -1 and a group has no ``"initial_lr"``.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: optimizer must be a tapegrad Optimizer, "
                f"got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for i, g in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                g.setdefault("initial_lr", g["lr"])
            elif "initial_lr" not in g:
                raise ValueError(
                    f"{type(self).__name__}: last_epoch={last_epoch} needs 'initial_lr' in "
                    f"parameter group {i}"
                )
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    @property
    def base_lr(self) -> float:
        """The first group's base rate."""
        return self.base_lrs[0]

    def _lr(self, base_lr: float) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        """The rate of every group at step ``last_epoch``."""
        return [self._lr(b) for b in self.base_lrs]

    def _set(self, lrs: list[float]) -> None:
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr

    def step(self) -> None:
        """Advance one step and set every group's rate."""
        self.last_epoch += 1
        self._set(self.get_lr())

    def get_last_lr(self) -> list[float]:
        """The rates in force, one per parameter group."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (and callables): enough to resume exactly."""
        return {
            k: v
            for k, v in self.__dict__.items()
            if k != "optimizer" and not k.startswith("_") and not callable(v)
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` and set the rates it implies."""
        self.__dict__.update(state)
        self._set(self.get_lr())


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (step // step_size)."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def _lr(self, base_lr: float) -> float:
        return base_lr * self.gamma ** (self.last_epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2 (closed form)."""

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def _lr(self, base_lr: float) -> float:
        t = self.last_epoch
        return (
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
        )


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin), PyTorch's two-phase cosine variant.

    lr rises from max_lr/div_factor to max_lr over ``pct_start`` of ``total_steps``, then
    falls to max_lr/(div_factor*final_div_factor). With ``cycle_momentum`` the momentum
    (SGD) or beta1 (Adam) moves the other way between ``max_momentum`` and
    ``base_momentum``. Step once per batch.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or both epochs and steps_per_epoch")
            total_steps = epochs * steps_per_epoch
        if total_steps < 2:
            raise ValueError(f"OneCycleLR: total_steps must be >= 2, got {total_steps}")
        if not 0 < pct_start < 1:
            raise ValueError(f"OneCycleLR: pct_start must lie in (0, 1), got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.total_steps, self.max_lr = int(total_steps), float(max_lr)
        self.initial = self.max_lr / div_factor
        self.min_lr = self.initial / final_div_factor
        self.phase_end = float(pct_start * self.total_steps) - 1
        self.anneal_strategy = anneal_strategy
        group = optimizer.param_groups[0] if isinstance(optimizer, Optimizer) else {}
        self.cycle_momentum = bool(cycle_momentum and (group.get("momentum") or "betas" in group))
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        if isinstance(optimizer, Optimizer) and last_epoch == -1:
            for g in optimizer.param_groups:
                g["initial_lr"] = self.initial
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "linear":
            return (end - start) * pct + start
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    def _phase(self) -> tuple[float, float, float, float, float]:
        t = self.last_epoch
        if t <= self.phase_end:
            pct = t / self.phase_end if self.phase_end > 0 else 1.0
            return self.initial, self.max_lr, self.max_momentum, self.base_momentum, pct
        span = (self.total_steps - 1) - self.phase_end
        pct = (t - self.phase_end) / span
        return self.max_lr, self.min_lr, self.base_momentum, self.max_momentum, pct

    def get_lr(self) -> list[float]:
        # like PyTorch, the step after the last one (last_epoch == total_steps) is allowed so
        # a loop can call step() after every batch
        """The learning rate of every group at the current step (momentum, or Adam's beta1, is
        cycled in opposite phase when ``cycle_momentum``).

        Raises
        ------
        ValueError
            If stepped more than ``total_steps`` times.
        """
        if self.last_epoch > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {self.last_epoch} times, total_steps is {self.total_steps}"
            )
        lr0, lr1, m0, m1, pct = self._phase()
        if self.cycle_momentum:
            m = self._anneal(m0, m1, pct)
            for g in self.optimizer.param_groups:
                if "betas" in g:
                    g["betas"] = (m, g["betas"][1])
                else:
                    g["momentum"] = m
        return [self._anneal(lr0, lr1, pct)] * len(self.optimizer.param_groups)


class LinearWarmup(LRScheduler):
    """Scale lr linearly from ``start_factor * base_lr`` to ``base_lr`` over ``warmup_steps``.

    After the warm-up, ``after`` (another scheduler built on the same optimizer, e.g.
    CosineAnnealingLR) takes over and is stepped from its own step 0.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        start_factor: float = 1.0 / 3,
        after: LRScheduler | None = None,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"LinearWarmup: warmup_steps must be >= 0, got {warmup_steps}")
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearWarmup: start_factor must lie in (0, 1], got {start_factor}")
        self.warmup_steps, self.start_factor = int(warmup_steps), float(start_factor)
        self._after = after
        super().__init__(optimizer, last_epoch)

    def step(self) -> None:
        """Advance one step: the warm-up ramp, then the ``after`` scheduler's own steps."""
        self.last_epoch += 1
        if self.last_epoch > self.warmup_steps and self._after is not None:
            self._after.step()
        else:
            self._set(self.get_lr())

    def _lr(self, base_lr: float) -> float:
        t = min(self.last_epoch, self.warmup_steps)
        if self.warmup_steps == 0:
            return base_lr
        factor = self.start_factor + (1 - self.start_factor) * t / self.warmup_steps
        return base_lr * factor

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state, with the ``after`` scheduler's under ``after``."""
        sd = super().state_dict()
        if self._after is not None:
            sd["after"] = self._after.state_dict()
        return sd

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the ``after`` scheduler's too) and set the rates it
        implies.
        """
        state = dict(state)
        after = state.pop("after", None)
        self.__dict__.update(state)
        if self._after is not None and after is not None:
            self._after.load_state_dict(after)
        if self.last_epoch > self.warmup_steps and self._after is not None:
            self._set(self._after.get_lr())
        else:
            self._set(self.get_lr())


class MultiStepLR(LRScheduler):
    """lr = base_lr * gamma ** (number of milestones <= step), as ``torch``'s MultiStepLR.

    A milestone listed twice multiplies by ``gamma`` twice, as in PyTorch.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: list[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        ms = list(milestones)
        if not all(isinstance(m, (int, np.integer)) and m >= 0 for m in ms):
            raise ValueError(
                f"MultiStepLR: milestones must be non-negative integers, got {milestones}"
            )
        if ms != sorted(ms):
            raise ValueError(f"MultiStepLR: milestones must be increasing, got {milestones}")
        self.milestones, self.gamma = [int(m) for m in ms], float(gamma)
        super().__init__(optimizer, last_epoch)

    def _lr(self, base_lr: float) -> float:
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, self.last_epoch)


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** step."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        if not gamma > 0:
            raise ValueError(f"ExponentialLR: gamma must be positive, got {gamma}")
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def _lr(self, base_lr: float) -> float:
        return base_lr * self.gamma**self.last_epoch


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step): one function, or one per parameter group.

    The functions are not part of :meth:`state_dict` (as in PyTorch for plain functions):
    build the scheduler with the same functions before loading.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        n = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 1
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(fns) != n:
            raise ValueError(f"LambdaLR: expected {n} lr_lambda functions, got {len(fns)}")
        for f in fns:
            if not callable(f):
                raise TypeError(f"LambdaLR: lr_lambda must be callable, got {type(f).__name__}")
        self._lr_lambdas = fns
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """``base_lr * lr_lambda(step)`` for every group."""
        return [b * f(self.last_epoch) for b, f in zip(self.base_lrs, self._lr_lambdas)]


class ReduceLROnPlateau(LRScheduler):
    """Divide the learning rates by ``1/factor`` when a metric stops improving.

    Call ``step(metric)`` after each evaluation. After more than ``patience`` steps without
    improvement (better than the best by ``threshold``, relative or absolute), every group's
    rate becomes ``max(lr * factor, min_lr)``; then ``cooldown`` steps pass before counting
    again. Same arguments and behaviour as ``torch.optim.lr_scheduler.ReduceLROnPlateau``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                "ReduceLROnPlateau: optimizer must be a tapegrad Optimizer, "
                f"got {type(optimizer).__name__}"
            )
        if not 0 <= factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must lie in [0, 1), got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        if patience < 0 or cooldown < 0:
            raise ValueError(
                f"ReduceLROnPlateau: patience and cooldown must be >= 0, got "
                f"patience={patience}, cooldown={cooldown}"
            )
        n = len(optimizer.param_groups)
        mins = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n
        if len(mins) != n:
            raise ValueError(f"ReduceLROnPlateau: expected {n} min_lr values, got {len(mins)}")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.min_lrs, self.eps = int(cooldown), [float(m) for m in mins], eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]

    def _is_better(self, a: float) -> bool:
        best, th = self.best, self.threshold
        if self.mode == "min":
            return a < (best * (1 - th) if self.threshold_mode == "rel" else best - th)
        return a > (best * (th + 1) if self.threshold_mode == "rel" else best + th)

    def step(self, metrics: Any = None) -> None:  # type: ignore[override]
        """Record one value of the monitored metric (a number or a one-element Tensor)."""
        if metrics is None:
            raise TypeError("ReduceLROnPlateau.step: give the monitored metric, step(metric)")
        current = float(np.asarray(getattr(metrics, "data", metrics)))
        self.last_epoch += 1
        if self._is_better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g, low in zip(self.optimizer.param_groups, self.min_lrs):
                old = float(g["lr"])
                new = max(old * self.factor, low)
                if old - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def get_lr(self) -> list[float]:
        """The current learning rates (this scheduler changes them only in :meth:`step`)."""
        return self.get_last_lr()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (best metric, counters, rates)."""
        self.__dict__.update(state)
