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
    """Log-softmax + NLL of logits (N, C) against int class indices (N,).

    Parameters
    ----------
    input : Tensor
        Logits (N, C), float32 or float64.
    target : Tensor or ndarray
        (N,) integer class indices in [0, C) (or ``ignore_index``).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages over the targets that count, ``"none"`` returns one loss per sample.
    label_smoothing : float, default 0.0
        In [0, 1]: the target puts this much mass uniformly over the classes.
    ignore_index : int, default -100
        Targets with this value add nothing (and are not counted by ``"mean"``).

    Returns
    -------
    Tensor
        A scalar, or (N,) with ``reduction="none"``.

    Raises
    ------
    TypeError
        If ``target`` does not hold integers.
    ValueError
        If the shapes do not match, a target is out of range, or ``reduction`` or
        ``label_smoothing`` is invalid (the message names the shapes and values).
    """
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
    """Negative log-likelihood of log-probabilities (N, C) at int class indices (N,).

    Parameters
    ----------
    input : Tensor
        Log-probabilities (N, C), e.g. from ``log_softmax``.
    target : Tensor or ndarray
        (N,) integer class indices in [0, C) (or ``ignore_index``).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages over the targets that count, ``"none"`` returns one loss per sample.
    ignore_index : int, default -100

    Returns
    -------
    Tensor
        A scalar, or (N,) with ``reduction="none"``.

    Raises
    ------
    TypeError
        If ``target`` does not hold integers.
    ValueError
        If the shapes do not match, a target is out of range, or ``reduction`` is unknown.
    """
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

    Parameters
    ----------
    input : Tensor
        Logits of any shape, float32 or float64.
    target : Tensor or ndarray
        Probabilities in [0, 1], the input's shape.
    reduction : {"mean", "sum", "none"}, default "mean"
    pos_weight : Tensor or ndarray, optional
        Weight of the positive term, broadcast against the last axis.

    Returns
    -------
    Tensor
        A scalar, or the input's shape with ``reduction="none"``.

    Raises
    ------
    ValueError
        If the shapes differ or ``reduction`` is unknown.
    """
    if pos_weight is not None:
        pos_weight = pos_weight.data if isinstance(pos_weight, Tensor) else np.asarray(pos_weight)
    x = _t(input, "binary_cross_entropy_with_logits")
    y = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=x.dtype))
    return _loss.BCEWithLogits.apply(x, y, pos_weight=pos_weight, reduction=reduction)
