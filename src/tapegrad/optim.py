"""Optimizers over a model's parameters (PyTorch's update rules and argument names)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .tensor import Tensor


class Optimizer:
    def __init__(self, params: Iterable[Tensor], defaults: dict[str, Any]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not defaults["lr"] >= 0:
            raise ValueError(
                f"{type(self).__name__}: lr must be non-negative, got {defaults['lr']}"
            )
        self.defaults = dict(defaults)
        self.lr = defaults["lr"]
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters and per-parameter buffers (index-keyed, like PyTorch)."""
        return {
            "lr": self.lr,
            "step_count": self.step_count,
            "state": [{k: v.copy() for k, v in s.items()} for s in self.state],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if len(sd["state"]) != len(self.params):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: state for "
                f"{len(sd['state'])} parameters, optimizer has {len(self.params)}"
            )
        self.lr = sd["lr"]
        self.step_count = int(sd["step_count"])
        self.state = [{k: np.array(v) for k, v in s.items()} for s in sd["state"]]

    def step(self) -> None:
        self.step_count += 1
        for p, st in zip(self.params, self.state):
            if p._grad is not None:
                self._update(p.data, p._grad, st)

    def _update(self, w: np.ndarray, g: np.ndarray, st: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """w -= lr * v with v = momentum * v + (g + wd * w) (Nesterov: step along g + momentum*v)."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"SGD: lr, momentum and weight_decay must be non-negative, got "
                f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        super().__init__(params, {"lr": lr})
        self.momentum, self.weight_decay = momentum, weight_decay
        self.nesterov, self.dampening = nesterov, dampening

    def _update(self, w, g, st):
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = g.copy()
            else:
                buf = st["momentum_buffer"]
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            buf = st["momentum_buffer"]
            g = g + self.momentum * buf if self.nesterov else buf
        w -= (self.lr * g).astype(w.dtype, copy=False)


class Adam(Optimizer):
    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{type(self).__name__}: betas must lie in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr})
        self.betas, self.eps, self.weight_decay, self.decoupled = (
            betas,
            eps,
            weight_decay,
            decoupled,
        )

    def _update(self, w, g, st):
        b1, b2 = self.betas
        if self.weight_decay and not self.decoupled:
            g = g + self.weight_decay * w
        if self.weight_decay and self.decoupled:
            w *= 1 - self.lr * self.weight_decay
        if "exp_avg" not in st:
            st["exp_avg"] = np.zeros_like(w)
            st["exp_avg_sq"] = np.zeros_like(w)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        t = self.step_count
        mhat = m / (1 - b1**t)
        vhat = v / (1 - b2**t)
        w -= (self.lr * mhat / (np.sqrt(vhat) + self.eps)).astype(w.dtype, copy=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01, as PyTorch)."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)


class RMSprop(Optimizer):
    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr})
        self.alpha, self.eps, self.weight_decay, self.momentum = alpha, eps, weight_decay, momentum

    def _update(self, w, g, st):
        if self.weight_decay:
            g = g + self.weight_decay * w
        if "square_avg" not in st:
            st["square_avg"] = np.zeros_like(w)
        sq = st["square_avg"]
        sq *= self.alpha
        sq += (1 - self.alpha) * g * g
        step = g / (np.sqrt(sq) + self.eps)
        if self.momentum:
            buf = st.setdefault("momentum_buffer", np.zeros_like(w))
            buf *= self.momentum
            buf += step
            step = buf
        w -= (self.lr * step).astype(w.dtype, copy=False)
