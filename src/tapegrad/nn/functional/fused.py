"""Fused activations: a ReLU in the same op (and memory pass) as the layer before it.

Each function returns what the composition it names returns, values and gradients alike
(``relu(conv2d(...))``, ``relu(conv_transpose2d(...))``, ``relu(batch_norm(...))``,
``relu(input + other)``), with one op
on the tape instead of two. :class:`tapegrad.nn.Sequential` runs them by itself where a
``Conv2d``, ``ConvTranspose2d`` or ``BatchNorm`` layer is followed by a ``ReLU`` layer.
"""

from __future__ import annotations

from ...ops.conv_transpose import ConvTranspose2dReLU
from ...ops.fused import AddReLU, BatchNormReLU
from ...tensor import Tensor
from ._common import IntOrPair, _opt, _t
from .conv import _apply_conv2d
from .norm import _apply_batch_norm


def conv2d_relu(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    """``relu(conv2d(input, weight, bias, ...))`` as one op: the convolution (any conv2d
    variant, depthwise included) without its bias, then bias and ReLU in one in-place pass;
    the backward masks the gradient and sums the bias gradient in one pass.

    Parameters and shapes are :func:`tapegrad.nn.functional.conv2d`'s.

    Returns
    -------
    Tensor
        (N, O, Ho, Wo), the input's dtype.

    Raises
    ------
    TypeError, ValueError
        As :func:`tapegrad.nn.functional.conv2d`, naming ``conv2d_relu``.
    """
    args = (input, weight, bias, stride, padding, dilation, groups)
    return _apply_conv2d("conv2d_relu", True, *args)


def conv_transpose2d_relu(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
) -> Tensor:
    """``relu(conv_transpose2d(input, weight, bias, ...))`` as one op: the transposed
    convolution (any variant) without its bias, then bias and ReLU in one in-place pass;
    the backward masks the gradient and sums the bias gradient in one pass.

    Parameters and shapes are :func:`tapegrad.nn.functional.conv_transpose2d`'s.

    Returns
    -------
    Tensor
        (N, C_out, Ho, Wo), the input's dtype.

    Raises
    ------
    TypeError, ValueError
        As :func:`tapegrad.nn.functional.conv_transpose2d`, naming ``conv_transpose2d_relu``.
    """
    fn = "conv_transpose2d_relu"
    x, w, b = _t(input, fn), _t(weight, fn, "weight"), _opt(bias, fn, "bias")
    # validated by tapegrad.ops.conv_transpose.ConvTranspose2dReLU.check
    return ConvTranspose2dReLU.apply(x, w, b, stride, padding, output_padding, dilation, groups)


def batch_norm_relu(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    normalize_variance: bool = True,
) -> Tensor:
    """``relu(batch_norm(input, ...))`` as one op: batch norm's kernels and running-statistics
    update, then the ReLU in place on its output; the backward masks the gradient before
    batch norm's backward.

    Parameters are :func:`tapegrad.nn.functional.batch_norm`'s.

    Returns
    -------
    Tensor
        The input's shape and dtype.

    Raises
    ------
    TypeError, ValueError
        As :func:`tapegrad.nn.functional.batch_norm`, naming ``batch_norm_relu``.
    """
    # validated by tapegrad.ops.fused.BatchNormReLU.check
    return _apply_batch_norm(
        BatchNormReLU, "batch_norm_relu", input, running_mean, running_var, weight, bias,
        training, momentum, eps, normalize_variance,
    )  # fmt: skip


def add_relu(input: Tensor, other: Tensor) -> Tensor:
    """``relu(input + other)`` as one op (a residual block's sum and activation): one pass
    writes the output and the ReLU's mask when both have one shape and dtype, NumPy's
    broadcasting otherwise.

    Parameters
    ----------
    input, other : Tensor or ndarray
        float32 or float64, broadcastable shapes.

    Returns
    -------
    Tensor
        The broadcast shape.

    Raises
    ------
    TypeError
        If an argument is not a Tensor or ndarray, or not float32/float64, or the dtypes
        differ.
    ValueError
        If the shapes do not broadcast; the message names both.
    """
    fn = "add_relu"
    # validated by tapegrad.ops.fused.AddReLU.check
    return AddReLU.apply(_t(input, fn), _t(other, fn, "other"))
