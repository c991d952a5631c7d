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
    return _loss.MSELoss.apply(
        _t(input, "mse_loss"), _t(target, "mse_loss", "target"), reduction=reduction
    )
