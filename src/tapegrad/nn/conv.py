"""Convolution layers: Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d (PyTorch's
parameter names, shapes and default initialisation)."""

from __future__ import annotations

from ..ops.checks import int_tuple, positive_int
from . import functional as F
from .init import bias_uniform, fan_in, kaiming_uniform
from .module import Module, Parameter


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class Conv2d(Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        in_channels = positive_int("Conv2d", "in_channels", in_channels)
        out_channels = positive_int("Conv2d", "out_channels", out_channels)
        groups = positive_int("Conv2d", "groups", groups)
        int_tuple("Conv2d", "kernel_size", kernel_size, 2, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        k = _pair(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        shape = (out_channels, in_channels // groups, *k)
        self.weight = Parameter(kaiming_uniform(shape))
        self.bias = Parameter(bias_uniform(out_channels, fan_in(shape))) if bias else None

    def forward(self, x):
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


class Conv1d(Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        in_channels = positive_int("Conv1d", "in_channels", in_channels)
        out_channels = positive_int("Conv1d", "out_channels", out_channels)
        groups = positive_int("Conv1d", "groups", groups)
        int_tuple("Conv1d", "kernel_size", kernel_size, 1, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv1d: groups={groups} must divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (k,)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        shape = (out_channels, in_channels // groups, k)
        self.weight = Parameter(kaiming_uniform(shape))
        self.bias = Parameter(bias_uniform(out_channels, fan_in(shape))) if bias else None

    def forward(self, x):
        return F.conv1d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class ConvTranspose2d(Module):
    """2-D transposed convolution; weight (in_channels, out_channels/groups, kH, kW)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
    ) -> None:
        super().__init__()
        in_channels = positive_int("ConvTranspose2d", "in_channels", in_channels)
        out_channels = positive_int("ConvTranspose2d", "out_channels", out_channels)
        groups = positive_int("ConvTranspose2d", "groups", groups)
        int_tuple("ConvTranspose2d", "kernel_size", kernel_size, 2, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"ConvTranspose2d: groups={groups} must divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        k = _pair(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.groups, self.dilation = groups, dilation
        shape = (in_channels, out_channels // groups, *k)
        # PyTorch computes fan_in from weight.shape[1] * kernel for transposed convs too
        self.weight = Parameter(kaiming_uniform(shape))
        self.bias = Parameter(bias_uniform(out_channels, fan_in(shape))) if bias else None

    def forward(self, x):
        return F.conv_transpose2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


class ConvTranspose1d(Module):
    """1-D transposed convolution; weight (in_channels, out_channels/groups, k)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
    ) -> None:
        super().__init__()
        in_channels = positive_int("ConvTranspose1d", "in_channels", in_channels)
        out_channels = positive_int("ConvTranspose1d", "out_channels", out_channels)
        groups = positive_int("ConvTranspose1d", "groups", groups)
        int_tuple("ConvTranspose1d", "kernel_size", kernel_size, 1, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"ConvTranspose1d: groups={groups} must divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (k,)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.groups, self.dilation = groups, dilation
        shape = (in_channels, out_channels // groups, k)
        self.weight = Parameter(kaiming_uniform(shape))
        self.bias = Parameter(bias_uniform(out_channels, fan_in(shape))) if bias else None

    def forward(self, x):
        return F.conv_transpose1d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
