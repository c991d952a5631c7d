"""Convolution layers: Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d (PyTorch's
parameter names, shapes and default initialisation)."""

from __future__ import annotations

from ..ops.checks import int_tuple, positive_int
from . import functional as F
from .init import bias_uniform, fan_in, kaiming_uniform
from .module import Module, Parameter


class _ConvNd(Module):
    """Shared constructor: checks, attributes, and the weight and bias parameters.

    Weight (out, in/groups, *kernel) for convolutions and (in, out/groups, *kernel) for
    transposed ones; PyTorch computes fan_in from weight.shape[1] * kernel for both.
    """

    nd = 2
    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride,
        padding,
        dilation,
        groups: int,
        bias: bool,
        output_padding=0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = positive_int(name, "in_channels", in_channels)
        out_channels = positive_int(name, "out_channels", out_channels)
        groups = positive_int(name, "groups", groups)
        k = int_tuple(name, "kernel_size", kernel_size, self.nd, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: groups={groups} must divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        if self.transposed:
            self.output_padding = output_padding
            shape = (in_channels, out_channels // groups, *k)
        else:
            shape = (out_channels, in_channels // groups, *k)
        self.weight = Parameter(kaiming_uniform(shape))
        self.bias = Parameter(bias_uniform(out_channels, fan_in(shape))) if bias else None

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


class _Conv(_ConvNd):
    """Conv1d / Conv2d: PyTorch's constructor; ``_fn`` is the functional op."""

    _fn = staticmethod(F.conv2d)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True) -> None:  # fmt: skip
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        )

    def forward(self, x):
        return self._fn(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class _ConvTranspose(_ConvNd):
    """ConvTranspose1d / ConvTranspose2d: PyTorch's constructor (output_padding before
    groups, dilation last); ``_fn`` is the functional op."""

    transposed = True
    _fn = staticmethod(F.conv_transpose2d)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True,
                 dilation=1) -> None:  # fmt: skip
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            output_padding,
        )  # fmt: skip

    def forward(self, x):
        return self._fn(x, self.weight, self.bias, self.stride, self.padding,
                        self.output_padding, self.groups, self.dilation)  # fmt: skip


class Conv2d(_Conv):
    """2-D convolution; weight (out_channels, in_channels/groups, kH, kW).

    Parameters
    ----------
    in_channels, out_channels : int
        Both positive and divisible by ``groups``.
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int, (int, int), "same" or "valid", default 0
    dilation : int or (int, int), default 1
    groups : int, default 1
    bias : bool, default True

    Attributes
    ----------
    weight : Parameter
        (out_channels, in_channels / groups, kH, kW), float32, Kaiming-uniform initialised
        as in PyTorch.
    bias : Parameter or None
        (out_channels,).

    Raises
    ------
    ValueError
        If a channel count or ``groups`` is not positive, or ``groups`` does not divide both
        channel counts. ``forward`` takes (N, C, H, W) and raises as
        :func:`tapegrad.nn.functional.conv2d`.
    """

    def forward_relu(self, x):
        """``relu(self(x))`` as one fused op (:func:`tapegrad.nn.functional.conv2d_relu`);
        :class:`tapegrad.nn.Sequential` calls it where a ReLU layer follows this one."""
        return F.conv2d_relu(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class Conv1d(_Conv):
    """1-D convolution; weight (out_channels, in_channels/groups, k).

    Parameters, attributes and errors as :class:`Conv2d`'s, with one int (or a 1-tuple)
    for each size, a weight of shape (out_channels, in_channels / groups, k), and
    ``forward`` taking (N, C, L) and raising as :func:`tapegrad.nn.functional.conv1d`.
    """

    nd = 1
    _fn = staticmethod(F.conv1d)


class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution; weight (in_channels, out_channels/groups, kH, kW).

    Parameters
    ----------
    in_channels, out_channels : int
        Both positive and divisible by ``groups``.
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
    output_padding : int or (int, int), default 0
    groups : int, default 1
    bias : bool, default True
    dilation : int or (int, int), default 1

    Attributes
    ----------
    weight : Parameter
        (in_channels, out_channels / groups, kH, kW), float32, initialised as in PyTorch.
    bias : Parameter or None
        (out_channels,).

    Raises
    ------
    ValueError
        If a channel count or ``groups`` is not positive, or ``groups`` does not divide both
        channel counts. ``forward`` takes (N, C, H, W) and raises as
        :func:`tapegrad.nn.functional.conv_transpose2d`.
    """

    def forward_relu(self, x):
        """``relu(self(x))`` as one fused op
        (:func:`tapegrad.nn.functional.conv_transpose2d_relu`); :class:`tapegrad.nn.Sequential`
        calls it where a ReLU layer follows this one."""
        return F.conv_transpose2d_relu(x, self.weight, self.bias, self.stride, self.padding,
                                       self.output_padding, self.groups, self.dilation)  # fmt: skip


class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution; weight (in_channels, out_channels/groups, k).

    Parameters, attributes and errors as :class:`ConvTranspose2d`'s, with one int (or a
    1-tuple) for each size, a weight of shape (in_channels, out_channels / groups, k), and
    ``forward`` taking (N, C, L) and raising as
    :func:`tapegrad.nn.functional.conv_transpose1d`.
    """

    nd = 1
    _fn = staticmethod(F.conv_transpose1d)
