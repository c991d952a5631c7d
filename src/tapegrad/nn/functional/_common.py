"""Shared helpers of the functional modules: accept Tensors (or arrays) and unwrap them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...tensor import Tensor

IntOrPair = int | tuple[int, int]


def _t(x: Any, fn: str, name: str = "input") -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return Tensor(x)
    raise TypeError(f"{fn}: {name} must be a Tensor, got {type(x).__name__}")


def _opt(x: Any, fn: str, name: str) -> Tensor | None:
    return None if x is None else _t(x, fn, name)


def _raw(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else t.data


def check_inplace(fn: str, inplace: Any) -> None:
    """``inplace`` (accepted for PyTorch compatibility) must be a bool: TypeError otherwise."""
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"{fn}: inplace must be a bool, got {inplace!r}")
