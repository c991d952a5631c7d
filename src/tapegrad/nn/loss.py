"""Loss modules with PyTorch's names and arguments."""

from __future__ import annotations

from typing import Any

from . import functional as F
from .module import Module


class CrossEntropyLoss(Module):
    """``F.cross_entropy`` of logits (N, C) against class indices (N,)."""

    def __init__(
        self,
        weight: Any = None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(weight, str):
            raise TypeError(
                "CrossEntropyLoss: the first argument is weight (as in PyTorch); pass "
                f"reduction={weight!r} by keyword"
            )
        self.weight = weight
        self.reduction, self.label_smoothing, self.ignore_index = (
            reduction,
            label_smoothing,
            ignore_index,
        )

    def forward(self, input: Any, target: Any):
        """The loss of logits ``input`` (N, C) against class indices ``target`` (N,) int64."""
        return F.cross_entropy(
            input,
            target,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
            weight=self.weight,
        )


class NLLLoss(Module):
    """``F.nll_loss`` of log-probabilities (N, C) against class indices (N,)."""

    def __init__(
        self, weight: Any = None, *, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if isinstance(weight, str):
            raise TypeError(
                "NLLLoss: the first argument is weight (as in PyTorch); pass "
                f"reduction={weight!r} by keyword"
            )
        self.weight, self.reduction, self.ignore_index = weight, reduction, ignore_index

    def forward(self, input: Any, target: Any):
        """The loss of log-probabilities ``input`` (N, C) against class indices ``target`` (N,)."""
        return F.nll_loss(
            input,
            target,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            weight=self.weight,
        )


class MSELoss(Module):
    """Mean (or summed) squared error of two same-shaped tensors."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, input: Any, target: Any):
        """The squared error of ``input`` and ``target`` (same shape); ValueError otherwise."""
        return F.mse_loss(input, target, reduction=self.reduction)


class BCEWithLogitsLoss(Module):
    """``F.binary_cross_entropy_with_logits``; ``pos_weight`` weights the positive class."""

    def __init__(self, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__()
        self.reduction, self.pos_weight = reduction, pos_weight

    def forward(self, input: Any, target: Any):
        """The loss of logits ``input`` against targets in [0, 1] of the same shape."""
        return F.binary_cross_entropy_with_logits(
            input, target, reduction=self.reduction, pos_weight=self.pos_weight
        )


class L1Loss(Module):
    """``F.l1_loss``: mean absolute error."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, input: Any, target: Any):
        """The loss of ``input`` against ``target`` (same shapes), reduced as configured."""
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(Module):
    """``F.smooth_l1_loss``: quadratic below ``beta``, linear above."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__()
        self.reduction, self.beta = reduction, beta

    def forward(self, input: Any, target: Any):
        """The loss of ``input`` against ``target`` (same shapes), reduced as configured."""
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(Module):
    """``F.huber_loss``: quadratic up to ``delta``, linear (slope ``delta``) above."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__()
        self.reduction, self.delta = reduction, delta

    def forward(self, input: Any, target: Any):
        """The loss of ``input`` against ``target`` (same shapes), reduced as configured."""
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(Module):
    """``F.binary_cross_entropy`` of probabilities; ``weight`` rescales each element."""

    def __init__(self, weight: Any = None, *, reduction: str = "mean") -> None:
        super().__init__()
        self.weight, self.reduction = weight, reduction

    def forward(self, input: Any, target: Any):
        """The loss of ``input`` against ``target`` (same shapes), reduced as configured."""
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class KLDivLoss(Module):
    """``F.kl_div`` with log-probability input (``reduction='batchmean'`` for true KL)."""

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__()
        self.reduction, self.log_target = reduction, log_target

    def forward(self, input: Any, target: Any):
        """The loss of ``input`` against ``target`` (same shapes), reduced as configured."""
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
