"""Activation and reshaping layers."""

from __future__ import annotations

from . import functional as F
from .module import Module


class ReLU(Module):
    """``max(x, 0)`` elementwise (:func:`tapegrad.nn.functional.relu`); any shape, same shape
    out."""

    def forward(self, x):
        """Apply ReLU to ``x`` (any shape, float32 or float64)."""
        return F.relu(x)


class Tanh(Module):
    """Hyperbolic tangent elementwise; any shape, same shape out."""

    def forward(self, x):
        """Apply tanh to ``x``."""
        return F.tanh(x)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` elementwise; any shape, same shape out."""

    def forward(self, x):
        """Apply the sigmoid to ``x``."""
        return F.sigmoid(x)


class Identity(Module):
    """Returns its input unchanged (a placeholder layer)."""

    def forward(self, x):
        """Return ``x`` itself."""
        return x


class Flatten(Module):
    """Flatten dimensions ``start_dim`` to ``end_dim`` into one: (N, C, H, W) -> (N, C*H*W) with
    the defaults.

    Parameters
    ----------
    start_dim : int, default 1
        The first dimension merged (1 keeps the batch dimension).
    end_dim : int, default -1
        The last dimension merged.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        """Flatten ``x``; ValueError if the dimensions are out of range for its shape."""
        return x.flatten(self.start_dim, self.end_dim)
