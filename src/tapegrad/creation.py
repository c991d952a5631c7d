"""Tensor creation and the global random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from .tensor import Tensor

_rng = {"gen": np.random.default_rng(0), "seed": 0}


def manual_seed(seed: int) -> None:
    """Seed tapegrad's generator (initialisation, ``randn``/``rand``, dropout, shuffling)."""
    _rng["gen"] = np.random.default_rng(seed)
    _rng["seed"] = int(seed)
    from .ops.dropout import reset_rng  # the dropout stream: seed and call counter

    reset_rng(seed)


def generator() -> np.random.Generator:
    return _rng["gen"]


def initial_seed() -> int:
    return _rng["seed"]


def _shape(shape: tuple) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros_like(t.data), requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones_like(t.data), requires_grad=requires_grad)


def randn(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    data = _rng["gen"].standard_normal(_shape(shape)).astype(dtype)
    return Tensor(data, requires_grad=requires_grad)


def rand(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    data = _rng["gen"].random(_shape(shape)).astype(dtype)
    return Tensor(data, requires_grad=requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    if stop is None:
        start, stop = 0, start
    return Tensor(np.arange(start, stop, step, dtype=dtype))
