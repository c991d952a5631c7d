"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d."""

from __future__ import annotations

from ...ops.pool import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    MaxPool2d,
    adaptive_out_size,
    pool_args,
)
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


def avg_pool2d(
    input: Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Mean over sliding windows. input (N, C, H, W) -> (N, C, Ho, Wo); stride defaults to
    kernel. ``count_include_pad`` counts zero padding in the divisor (PyTorch's default)."""
    x = _t(input, "avg_pool2d")
    kernel, stride, padding, _, out = pool_args(
        "avg_pool2d", x.data, kernel_size, stride, padding, 1, ceil_mode
    )
    return AvgPool2d.apply(x, kernel, stride, padding, out, bool(count_include_pad))


def adaptive_avg_pool2d(input: Tensor, output_size: int | tuple | None) -> Tensor:
    """Mean over windows chosen so the output is ``output_size``: input (N, C, H, W) ->
    (N, C, Ho, Wo). ``1`` is global average pooling; a None entry keeps that input size."""
    x = _t(input, "adaptive_avg_pool2d")
    out = adaptive_out_size("adaptive_avg_pool2d", x.data, output_size)
    return AdaptiveAvgPool2d.apply(x, out)
