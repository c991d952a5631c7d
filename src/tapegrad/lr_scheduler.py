"""Learning-rate schedulers with PyTorch's names, arguments and ``step()`` semantics.

A scheduler sets ``optimizer.lr`` at construction (its value for step 0) and on every
``step()``; ``last_epoch`` counts the steps taken (whether a step is an epoch or a batch
is the caller's choice). ``state_dict()``/``load_state_dict()`` make ``--resume`` exact.
"""

from __future__ import annotations

import math
from typing import Any

from .optim import Optimizer


class LRScheduler:
    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: optimizer must be a tapegrad Optimizer, "
                f"got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.base_lr = float(getattr(optimizer, "initial_lr", optimizer.lr))
        optimizer.initial_lr = self.base_lr
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()

    def get_last_lr(self) -> list[float]:
        return [self.optimizer.lr]

    def state_dict(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.__dict__.items() if k != "optimizer" and not k.startswith("_")
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.optimizer.lr = self.get_lr()


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (step // step_size)."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> float:
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2 (closed form)."""

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> float:
        t = self.last_epoch
        return (
            self.eta_min
            + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
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
        self.cycle_momentum = bool(
            cycle_momentum and (getattr(optimizer, "momentum", 0) or hasattr(optimizer, "betas"))
        )
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        optimizer.initial_lr = self.initial
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

    def get_lr(self) -> float:
        # like PyTorch, the step after the last one (last_epoch == total_steps) is allowed so
        # a loop can call step() after every batch
        if self.last_epoch > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {self.last_epoch} times, total_steps is {self.total_steps}"
            )
        lr0, lr1, m0, m1, pct = self._phase()
        if self.cycle_momentum:
            m = self._anneal(m0, m1, pct)
            if hasattr(self.optimizer, "betas"):
                self.optimizer.betas = (m, self.optimizer.betas[1])
            else:
                self.optimizer.momentum = m
        return self._anneal(lr0, lr1, pct)


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
        self.last_epoch += 1
        if self.last_epoch > self.warmup_steps and self._after is not None:
            self._after.step()
        else:
            self.optimizer.lr = self.get_lr()

    def get_lr(self) -> float:
        t = min(self.last_epoch, self.warmup_steps)
        if self.warmup_steps == 0:
            return self.base_lr
        factor = self.start_factor + (1 - self.start_factor) * t / self.warmup_steps
        return self.base_lr * factor

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        if self._after is not None:
            sd["after"] = self._after.state_dict()
        return sd

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        after = state.pop("after", None)
        self.__dict__.update(state)
        if self._after is not None and after is not None:
            self._after.load_state_dict(after)
        if self.last_epoch > self.warmup_steps and self._after is not None:
            self.optimizer.lr = self._after.get_lr()
        else:
            self.optimizer.lr = self.get_lr()
