"""Pooling: max_pool2d."""

from __future__ import annotations

from ...ops.pool import MaxPool2d, pool_args
from ...tensor import Tensor
from ._common import IntOrPair, _t


def max_pool2d(
    input: Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """Max over sliding windows. input (N, C, H, W) -> (N, C, Ho, Wo); stride defaults to kernel."""
    x = _t(input, "max_pool2d")
    kernel, stride, padding, dilation, out = pool_args(
        "max_pool2d", x.data, kernel_size, stride, padding, dilation, ceil_mode
    )
    return MaxPool2d.apply(x, kernel, stride, padding, dilation, out)
