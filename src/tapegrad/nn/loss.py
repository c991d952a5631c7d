"""Loss modules: CrossEntropyLoss, NLLLoss, MSELoss, BCEWithLogitsLoss (PyTorch's names)."""

from __future__ import annotations

from typing import Any

from . import functional as F
from .module import Module


class CrossEntropyLoss(Module):
    """``F.cross_entropy`` of logits (N, C) against class indices (N,)."""

    def __init__(
        self, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int = -100
    ) -> None:
        super().__init__()
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
        )


class NLLLoss(Module):
    """``F.nll_loss`` of log-probabilities (N, C) against class indices (N,)."""

    def __init__(self, reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__()
        self.reduction, self.ignore_index = reduction, ignore_index

    def forward(self, input: Any, target: Any):
        """The loss of log-probabilities ``input`` (N, C) against class indices ``target`` (N,)."""
        return F.nll_loss(input, target, reduction=self.reduction, ignore_index=self.ignore_index)


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
