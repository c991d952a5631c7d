"""Losses: cross_entropy, nll_loss, mse_loss, l1_loss, smooth_l1_loss, huber_loss,
binary_cross_entropy(_with_logits), kl_div."""

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
    weight: Tensor | np.ndarray | None = None,
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
    weight : Tensor or ndarray, optional
        (C,) class weights; the mean then divides by the summed weights of the targets.

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
        weight=_raw_or_none(weight),
    )


def _raw_or_none(w):
    return None if w is None else (w.data if isinstance(w, Tensor) else np.asarray(w))


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
    weight: Tensor | np.ndarray | None = None,
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
    weight : Tensor or ndarray, optional
        (C,) class weights; the mean then divides by the summed weights of the targets.

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
        _t(input, "nll_loss"),
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        weight=_raw_or_none(weight),
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


def _pair(fn: str, input, target) -> tuple[Tensor, Tensor]:
    x = _t(input, fn)
    y = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=x.dtype))
    return x, y


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or summed, or elementwise) absolute difference of two same-shaped tensors."""
    x, y = _pair("l1_loss", input, target)
    return _loss.PiecewiseLoss.apply(x, y, kind="l1", reduction=reduction)


def smooth_l1_loss(
    input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0
) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target)."""
    if not beta >= 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    x, y = _pair("smooth_l1_loss", input, target)
    return _loss.PiecewiseLoss.apply(x, y, kind="smooth_l1", reduction=reduction, beta=beta)


def huber_loss(
    input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0
) -> Tensor:
    """0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta) (d = input - target)."""
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    x, y = _pair("huber_loss", input, target)
    return _loss.PiecewiseLoss.apply(x, y, kind="huber", reduction=reduction, beta=delta)


def binary_cross_entropy(
    input: Tensor,
    target: Tensor | np.ndarray,
    weight: Tensor | np.ndarray | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy of probabilities ``input`` in [0, 1] against ``target``.

    Each log is clamped at -100 as in PyTorch; ``weight`` broadcasts against the input.
    Prefer ``binary_cross_entropy_with_logits`` on logits: it is stable for any input.
    """
    x, y = _pair("binary_cross_entropy", input, target)
    return _loss.BCELoss.apply(x, y, weight=_raw_or_none(weight), reduction=reduction)


def kl_div(
    input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False
) -> Tensor:
    """KL divergence with ``input`` as log-probabilities: ``target (log target - input)``.

    ``reduction='batchmean'`` (the mathematically right mean) divides the sum by the batch
    size; ``'mean'`` divides by the number of elements, as PyTorch does.
    """
    x, y = _pair("kl_div", input, target)
    return _loss.KLDiv.apply(x, y, reduction=reduction, log_target=log_target)
