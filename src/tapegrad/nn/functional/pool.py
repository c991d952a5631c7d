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
    """Max over sliding windows. input (N, C, H, W) -> (N, C, Ho, Wo); stride defaults to kernel.

    Parameters
    ----------
    input : Tensor
        (N, C, H, W), float32 or float64.
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int or (int, int), default 0
        Implicit ``-inf`` on each side, at most half the window.
    dilation : int or (int, int), default 1
    ceil_mode : bool, default False
        Round the output size up instead of down.

    Returns
    -------
    Tensor
        (N, C, Ho, Wo); the gradient goes to one maximal element per window.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray.
    ValueError
        If ``input`` is not 4-D, a window or stride is not positive, the padding exceeds half
        the window, or the output would be empty; the message names the sizes.
    """
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
    kernel. ``count_include_pad`` counts zero padding in the divisor (PyTorch's default).

    Parameters
    ----------
    input : Tensor
        (N, C, H, W), float32 or float64.
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int or (int, int), default 0
        Zeros on each side, at most half the window.
    ceil_mode : bool, default False
    count_include_pad : bool, default True

    Returns
    -------
    Tensor
        (N, C, Ho, Wo).

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray.
    ValueError
        If ``input`` is not 4-D, a window or stride is not positive, the padding exceeds half
        the window, or the output would be empty; the message names the sizes.
    """
    x = _t(input, "avg_pool2d")
    kernel, stride, padding, _, out = pool_args(
        "avg_pool2d", x.data, kernel_size, stride, padding, 1, ceil_mode
    )
    return AvgPool2d.apply(x, kernel, stride, padding, out, bool(count_include_pad))


def adaptive_avg_pool2d(input: Tensor, output_size: int | tuple | None) -> Tensor:
    """Mean over windows chosen so the output is ``output_size``: input (N, C, H, W) ->
    (N, C, Ho, Wo). ``1`` is global average pooling; a None entry keeps that input size.

    Parameters
    ----------
    input : Tensor
        (N, C, H, W), float32 or float64.
    output_size : int, (int or None, int or None) or None
        (Ho, Wo); an int means a square output.

    Returns
    -------
    Tensor
        (N, C, Ho, Wo).

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray.
    ValueError
        If ``input`` is not 4-D or an output size is not positive.
    """
    x = _t(input, "adaptive_avg_pool2d")
    out = adaptive_out_size("adaptive_avg_pool2d", x.data, output_size)
    return AdaptiveAvgPool2d.apply(x, out)
