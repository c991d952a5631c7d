"""Linear layer."""

from __future__ import annotations

from ..ops.checks import positive_int
from . import functional as F
from .init import bias_uniform, kaiming_uniform
from .module import Module, Parameter


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        in_features = positive_int("Linear", "in_features", in_features)
        out_features = positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(kaiming_uniform((out_features, in_features)))
        self.bias = Parameter(bias_uniform(out_features, in_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"
