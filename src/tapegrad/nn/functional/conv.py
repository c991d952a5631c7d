"""Convolutions: conv1d, conv2d, conv_transpose1d, conv_transpose2d."""

from __future__ import annotations

from ...ops.conv import conv2d_function, conv_args
from ...ops.conv_transpose import ConvTranspose2d, conv_transpose_args
from ...ops.fused import conv_relu_function
from ...ops.shape import Pad
from ...tensor import Tensor
from ._common import IntOrPair, _opt, _raw, _t


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation. input (N, C, H, W), weight (O, C/groups, kH, kW) -> (N, O, Ho, Wo).

    Parameters
    ----------
    input : Tensor
        (N, C, H, W), float32 or float64.
    weight : Tensor
        (O, C / groups, kH, kW), the input's dtype.
    bias : Tensor, optional
        (O,).
    stride : int or (int, int), default 1
    padding : int, (int, int), "same" or "valid", default 0
        Zero padding on each side; ``"same"`` keeps H and W (stride 1 only).
    dilation : int or (int, int), default 1
    groups : int, default 1
        ``groups == C`` runs the depthwise kernels.

    Returns
    -------
    Tensor
        (N, O, Ho, Wo) with Ho = (H + 2 * padding - dilation * (kH - 1) - 1) // stride + 1.

    Raises
    ------
    TypeError
        If an argument is not a Tensor or ndarray, the input is not float32/float64, or the
        arguments' dtypes differ.
    ValueError
        If a shape does not fit (wrong rank, channels not matching ``weight``, ``groups`` not
        dividing them, a bias of the wrong length, a kernel larger than the padded input) or
        an argument is out of range; the message names the argument and the shapes.
    """
    return _apply_conv2d("conv2d", False, input, weight, bias, stride, padding, dilation, groups)


def _apply_conv2d(
    fn: str, relu: bool, input, weight, bias, stride, padding, dilation, groups
) -> Tensor:
    """The body of ``conv2d`` and ``conv2d_relu`` (``relu``), errors naming ``fn``: a string
    padding resolved here, then the op for the call's shapes (depthwise or not)."""
    x, w, b = _t(input, fn), _t(weight, fn, "weight"), _opt(bias, fn, "bias")
    if isinstance(padding, str):
        # "same" may pad one pixel more at the end than at the start: that pixel is added
        # here, the op pads symmetrically
        stride, padding, dilation, groups, extra = conv_args(
            fn, x.data, w.data, _raw(b), stride, padding, dilation, groups
        )
        if any(extra):
            x = Pad.apply(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    # the Function's check validates the call (tapegrad.ops.conv.Conv2d.check, or
    # tapegrad.ops.fused.Conv2dReLU.check naming conv2d_relu)
    op = conv2d_function(x.shape, w.shape, groups)
    if relu:
        op = conv_relu_function(op)
    return op.apply(x, w, b, stride, padding, dilation, groups)


def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
    groups: int = 1,
) -> Tensor:
    """1-D cross-correlation. input (N, C, L), weight (O, C/groups, k) -> (N, O, Lo).

    Parameters
    ----------
    input : Tensor
        (N, C, L), float32 or float64.
    weight : Tensor
        (O, C / groups, k), the input's dtype.
    bias : Tensor, optional
        (O,).
    stride : int, default 1
    padding : int, "same" or "valid", default 0
        ``"same"`` keeps L (stride 1 only).
    dilation : int, default 1
    groups : int, default 1

    Returns
    -------
    Tensor
        (N, O, Lo), computed as a conv2d over a height of 1.

    Raises
    ------
    TypeError
        If an argument is not a Tensor or ndarray, the input is not float32/float64, or the
        arguments' dtypes differ.
    ValueError
        If a shape does not fit (wrong rank, channels not matching ``weight``, ``groups`` not
        dividing them, a bias of the wrong length, a kernel larger than the padded input) or
        an argument is out of range; the message names the argument and the shapes.
    """
    x, w, b = _t(input, "conv1d"), _t(weight, "conv1d", "weight"), _opt(bias, "conv1d", "bias")
    stride, padding, dilation, groups, extra = conv_args(
        "conv1d", x.data, w.data, _raw(b), stride, padding, dilation, groups, nd=1
    )
    if extra[0]:
        x = Pad.apply(x, ((0, 0), (0, 0), (0, extra[0])))
    fn = conv2d_function(x.shape, w.shape, groups)
    y = fn.apply(
        x.unsqueeze(2),
        w.unsqueeze(2),
        b,
        stride=(1, stride[0]),
        padding=(0, padding[0]),
        dilation=(1, dilation[0]),
        groups=groups,
    )
    return y.squeeze(2)


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
) -> Tensor:
    """2-D transposed convolution. input (N, C_in, H, W), weight (C_in, C_out/groups, kH, kW)
    -> (N, C_out, Ho, Wo), Ho = (H-1)*stride - 2*padding + dilation*(kH-1) + output_padding + 1.

    Parameters
    ----------
    input : Tensor
        (N, C_in, H, W), float32 or float64.
    weight : Tensor
        (C_in, C_out / groups, kH, kW), the input's dtype (PyTorch's layout).
    bias : Tensor, optional
        (C_out,).
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
        Removed from each side of the full output.
    output_padding : int or (int, int), default 0
        Added to one side of the output; smaller than stride or dilation.
    dilation : int or (int, int), default 1
    groups : int, default 1

    Returns
    -------
    Tensor
        (N, C_out, Ho, Wo).

    Raises
    ------
    TypeError
        If an argument is not a Tensor or ndarray, the input is not float32/float64, or the
        arguments' dtypes differ.
    ValueError
        If a shape does not fit (wrong rank, channels not matching ``weight``, ``groups`` not
        dividing them, a bias of the wrong length, a kernel larger than the padded input) or
        an argument is out of range; the message names the argument and the shapes.
    """
    fn = "conv_transpose2d"
    x, w, b = _t(input, fn), _t(weight, fn, "weight"), _opt(bias, fn, "bias")
    # validated by tapegrad.ops.conv_transpose.ConvTranspose2d.check
    return ConvTranspose2d.apply(x, w, b, stride, padding, output_padding, dilation, groups)


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    groups: int = 1,
    dilation: int = 1,
) -> Tensor:
    """1-D transposed convolution. input (N, C_in, L), weight (C_in, C_out/groups, k)
    -> (N, C_out, Lo), Lo = (L-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1.

    Parameters
    ----------
    input : Tensor
        (N, C_in, L), float32 or float64.
    weight : Tensor
        (C_in, C_out / groups, k).
    bias : Tensor, optional
        (C_out,).
    stride : int, default 1
    padding : int, default 0
    output_padding : int, default 0
    groups : int, default 1
    dilation : int, default 1

    Returns
    -------
    Tensor
        (N, C_out, Lo), computed as a conv_transpose2d over a height of 1.

    Raises
    ------
    TypeError
        If an argument is not a Tensor or ndarray, the input is not float32/float64, or the
        arguments' dtypes differ.
    ValueError
        If a shape does not fit (wrong rank, channels not matching ``weight``, ``groups`` not
        dividing them, a bias of the wrong length, a kernel larger than the padded input) or
        an argument is out of range; the message names the argument and the shapes.
    """
    fn = "conv_transpose1d"
    x, w, b = _t(input, fn), _t(weight, fn, "weight"), _opt(bias, fn, "bias")
    s, p, op, d, groups = conv_transpose_args(
        fn, x.data, w.data, _raw(b), stride, padding, output_padding, groups, dilation, nd=1
    )
    y = ConvTranspose2d.apply(
        x.unsqueeze(2), w.unsqueeze(2), b, (1, s[0]), (0, p[0]), (0, op[0]), (1, d[0]), groups
    )
    return y.squeeze(2)
