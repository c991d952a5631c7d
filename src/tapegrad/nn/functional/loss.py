"""Losses: cross_entropy, mse_loss."""

from __future__ import annotations

import numpy as np

from ...ops import loss as _loss
from ...tensor import Tensor
from ._common import _t


def cross_entropy(
    input: Tensor,
    target: Tensor | np.ndarray,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> Tensor:
    """Log-softmax + NLL of logits (N, C) against int class indices (N,)."""
    target = target.data if isinstance(target, Tensor) else np.asarray(target)
    return _loss.CrossEntropy.apply(
        _t(input, "cross_entropy"),
        target,
        reduction=reduction,
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error ``(input - target) ** 2``, averaged (``"mean"``), summed (``"sum"``) or
    elementwise (``"none"``).

    Parameters
    ----------
    input, target : Tensor or ndarray
        The same shape, float32 or float64.
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    Tensor
        A scalar, or the input's shape with ``reduction="none"``.

    Raises
    ------
    ValueError
        If the shapes differ (both are named) or ``reduction`` is unknown.
    TypeError
        If an argument is not a Tensor or ndarray.
    """
    return _loss.MSELoss.apply(
        _t(input, "mse_loss"), _t(target, "mse_loss", "target"), reduction=reduction
    )


def nll_loss(
    input: Tensor,
    target: Tensor | np.ndarray,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    """Negative log-likelihood of log-probabilities (N, C) at int class indices (N,)."""
    target = target.data if isinstance(target, Tensor) else np.asarray(target)
    return _loss.NLLLoss.apply(
        _t(input, "nll_loss"), target, reduction=reduction, ignore_index=ignore_index
    )


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor | np.ndarray,
    reduction: str = "mean",
    pos_weight: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable op; input and target of one shape.

    ``pos_weight`` (broadcast against the last axis, as in PyTorch) weights positives.
    """
    if pos_weight is not None:
        pos_weight = pos_weight.data if isinstance(pos_weight, Tensor) else np.asarray(pos_weight)
    x = _t(input, "binary_cross_entropy_with_logits")
    y = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=x.dtype))
    return _loss.BCEWithLogits.apply(x, y, pos_weight=pos_weight, reduction=reduction)
