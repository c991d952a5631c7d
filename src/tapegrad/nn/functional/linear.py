"""linear."""

from __future__ import annotations

from ...ops.linalg import Linear
from ...tensor import Tensor
from ._common import _opt, _t


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input (..., in) @ weight (out, in).T + bias (out,)."""
    return Linear.apply(
        _t(input, "linear"), _t(weight, "linear", "weight"), _opt(bias, "linear", "bias")
    )
