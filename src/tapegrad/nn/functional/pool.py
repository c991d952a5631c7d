"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d, max_pool1d,
avg_pool1d."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ops.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
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
    # validated by tapegrad.ops.pool.MaxPool2d.check
    return MaxPool2d.apply(
        _t(input, "max_pool2d"), kernel_size, stride, padding, dilation, ceil_mode
    )


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
    return AvgPool2d.apply(x, kernel_size, stride, padding, ceil_mode, count_include_pad)


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
    return AdaptiveAvgPool2d.apply(_t(input, "adaptive_avg_pool2d"), output_size)


def adaptive_max_pool2d(
    input: Tensor, output_size: int | tuple | None, return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Max over PyTorch's adaptive windows: input (N, C, H, W) -> (N, C, Ho, Wo).

    Window ``i`` of an axis of size n spans ``[floor(i n / Ho), ceil((i + 1) n / Ho))``.
    With ``return_indices`` also the flat index (into H * W) of each maximum, int64.
    """
    from ...ops.nn_extra import AdaptiveMaxPool2d as _AMP

    x = _t(input, "adaptive_max_pool2d")
    y = _AMP.apply(x, output_size)  # validated by AdaptiveMaxPool2d.check
    if return_indices:
        return y, Tensor(_indices(x, y.shape[2:]))
    return y


def _indices(x: Tensor, out: tuple[int, int]) -> np.ndarray:
    from ...autograd import Context
    from ...ops.nn_extra import AdaptiveMaxPool2d as _AMP

    ctx = Context((False,))
    _AMP.forward(ctx, x.data, out)
    return ctx.saved_arrays[0]


def _as_2d(fn: str, x: Tensor) -> tuple[Tensor, bool]:
    if x.ndim not in (2, 3):
        raise ValueError(f"{fn}: input must be 2-D (C, L) or 3-D (N, C, L), got shape {x.shape}")
    unbatched = x.ndim == 2
    return (x.unsqueeze(0) if unbatched else x).unsqueeze(2), unbatched


def _one(fn: str, name: str, v: Any, minimum: int) -> int:
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
        raise (TypeError if not isinstance(v, (int, np.integer)) else ValueError)(
            f"{fn}: {name} must be an int >= {minimum}, got {v!r}"
        )
    return int(v)


def max_pool1d(
    input: Tensor,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """Max over sliding windows of the last axis: (N, C, L) -> (N, C, Lo) (or (C, L))."""
    fn = "max_pool1d"
    x, unbatched = _as_2d(fn, _t(input, fn))
    k = _one(fn, "kernel_size", kernel_size, 1)
    s = k if stride is None else _one(fn, "stride", stride, 1)
    p, d = _one(fn, "padding", padding, 0), _one(fn, "dilation", dilation, 1)
    y = max_pool2d(x, (1, k), (1, s), (0, p), (1, d), ceil_mode).squeeze(2)
    return y.squeeze(0) if unbatched else y


def avg_pool1d(
    input: Tensor,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Mean over sliding windows of the last axis: (N, C, L) -> (N, C, Lo) (or (C, L))."""
    fn = "avg_pool1d"
    x, unbatched = _as_2d(fn, _t(input, fn))
    k = _one(fn, "kernel_size", kernel_size, 1)
    s = k if stride is None else _one(fn, "stride", stride, 1)
    p = _one(fn, "padding", padding, 0)
    y = avg_pool2d(x, (1, k), (1, s), (0, p), ceil_mode, count_include_pad).squeeze(2)
    return y.squeeze(0) if unbatched else y
