"""Gradient utilities (``torch.nn.utils``): clipping by global norm or by value."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _with_grads(fn: str, parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{fn}: parameter {i} is a {type(p).__name__}, not a Tensor")
    return [p for p in params if p.grad_data is not None]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scale the gradients in place so that their joint norm is at most ``max_norm``.

    The norm is taken over all gradients together, as if concatenated into one vector
    (``norm_type`` may be ``inf``). Each gradient is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``, as PyTorch does. Parameters without a
    gradient are skipped.

    Returns
    -------
    Tensor
        The total norm before clipping (0-d, float64 if any gradient is float64).

    Raises
    ------
    RuntimeError
        ``error_if_nonfinite`` and the norm is NaN or infinite.
    ValueError
        ``max_norm`` is negative or ``norm_type`` is not positive.
    """
    fn = "clip_grad_norm_"
    params = _with_grads(fn, parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not max_norm >= 0:
        raise ValueError(f"{fn}: max_norm must be non-negative, got {max_norm}")
    if not norm_type > 0:
        raise ValueError(f"{fn}: norm_type must be positive (or inf), got {norm_type}")
    if not params:
        return Tensor(np.array(0.0, np.float32))
    dtype = np.result_type(*[p.grad_data.dtype for p in params])
    if math.isinf(norm_type):
        norms = [np.abs(p.grad_data).max(initial=0.0) for p in params]
        total = np.asarray(max(norms), dtype)
    else:
        norms = [
            np.linalg.norm(p.grad_data.ravel(), ord=norm_type) if p.grad_data.size else 0.0
            for p in params
        ]
        total = np.asarray(np.linalg.norm(np.asarray(norms, np.float64), ord=norm_type), dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"{fn}: the total norm of order {norm_type} of the gradients is {float(total)}; "
            "pass error_if_nonfinite=False to clip anyway"
        )
    coef = min(max_norm / (float(total) + 1e-6), 1.0)
    for p in params:
        p.grad_data = p.grad_data * p.grad_data.dtype.type(coef)
    return Tensor(total)


def clip_grad_value_(
    parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every gradient elementwise into ``[-clip_value, clip_value]`` in place.

    Raises
    ------
    ValueError
        ``clip_value`` is negative.
    """
    fn = "clip_grad_value_"
    clip_value = float(clip_value)
    if not clip_value >= 0:
        raise ValueError(f"{fn}: clip_value must be non-negative, got {clip_value}")
    for p in _with_grads(fn, parameters):
        p.grad_data = np.clip(p.grad_data, -clip_value, clip_value)
