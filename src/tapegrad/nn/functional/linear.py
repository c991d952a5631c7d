"""linear."""

from __future__ import annotations

from ...ops.linalg import Linear
from ...tensor import Tensor
from ._common import _opt, _t


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input (..., in) @ weight (out, in).T + bias (out,).

    Parameters
    ----------
    input : Tensor
        (..., in_features), float32 or float64.
    weight : Tensor
        (out_features, in_features).
    bias : Tensor, optional
        (out_features,).

    Returns
    -------
    Tensor
        (..., out_features).

    Raises
    ------
    ValueError
        If the input's last dimension is not ``in_features`` or the bias has another length
        (the shapes are named).
    """
    return Linear.apply(
        _t(input, "linear"), _t(weight, "linear", "weight"), _opt(bias, "linear", "bias")
    )
