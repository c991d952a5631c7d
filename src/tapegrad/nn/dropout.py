"""Dropout layers: Dropout, Dropout2d, GaussianDropout (identity in ``eval()`` mode)."""

from __future__ import annotations

from ..ops.dropout import check_p, check_sigma
from . import functional as F
from .functional._common import check_inplace
from .module import Module


class Dropout(Module):
    """Zeroes elements with probability p; kept ones scaled by 1/(1-p) unless scale=False."""

    def __init__(self, p: float = 0.5, scale: bool = True, *, inplace: bool = False) -> None:
        super().__init__()
        check_inplace("Dropout", inplace)  # PyTorch compatibility: a new tensor
        self.p, self.scale, self.inplace = check_p("Dropout", p), scale, inplace

    def forward(self, x):
        """In training mode, drop elements of ``x`` (any shape); in eval mode return ``x``."""
        return F.dropout(x, self.p, self.training, self.scale)

    def extra_repr(self) -> str:
        """The drop probability (and ``scale=False``), as shown in the repr."""
        return f"p={self.p}" + ("" if self.scale else ", scale=False")


class Dropout2d(Module):
    """Zeroes whole channels of (N, C, H, W) input with probability p."""

    def __init__(self, p: float = 0.5, scale: bool = True, *, inplace: bool = False) -> None:
        super().__init__()
        check_inplace("Dropout2d", inplace)  # PyTorch compatibility: a new tensor
        self.p, self.scale, self.inplace = check_p("Dropout2d", p), scale, inplace

    def forward(self, x):
        """In training mode, drop whole channels of ``x`` (N, C, H, W); in eval mode return
        ``x``."""
        return F.dropout2d(x, self.p, self.training, self.scale)

    def extra_repr(self) -> str:
        """The drop probability, as shown in the repr."""
        return f"p={self.p}"


class GaussianDropout(Module):
    """Multiplies every element by R ~ N(1, sigma^2) while training."""

    def __init__(self, sigma: float = 0.5) -> None:
        super().__init__()
        self.sigma = check_sigma("GaussianDropout", sigma)

    def forward(self, x):
        """In training mode, multiply ``x`` by N(1, sigma^2) noise; in eval mode return ``x``."""
        return F.gaussian_dropout(x, self.sigma, self.training)

    def extra_repr(self) -> str:
        """The noise's standard deviation, as shown in the repr."""
        return f"sigma={self.sigma}"
