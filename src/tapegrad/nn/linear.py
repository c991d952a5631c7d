"""Linear layer."""

from __future__ import annotations

from ..ops.checks import positive_int
from . import functional as F
from .init import bias_uniform, kaiming_uniform
from .module import Module, Parameter


class Linear(Module):
    """``y = x @ weight.T + bias`` over the last dimension (PyTorch's layout and initialisation).

    Parameters
    ----------
    in_features : int
        Size of the input's last dimension (>= 1).
    out_features : int
        Size of the output's last dimension (>= 1).
    bias : bool, default True
        Learn an additive bias.

    Attributes
    ----------
    weight : Parameter
        (out_features, in_features), float32, Kaiming-uniform initialised.
    bias : Parameter or None
        (out_features,), uniform in +-1/sqrt(in_features).

    Raises
    ------
    ValueError
        If a size is not a positive int.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        in_features = positive_int("Linear", "in_features", in_features)
        out_features = positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(kaiming_uniform((out_features, in_features)))
        self.bias = Parameter(bias_uniform(out_features, in_features)) if bias else None

    def forward(self, x):
        """Map ``x`` (..., in_features) to (..., out_features); ValueError on a size mismatch."""
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """The sizes and whether there is a bias, as shown in the repr."""
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"
