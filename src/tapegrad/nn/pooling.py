"""Pooling layers: MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d."""

from __future__ import annotations

from . import functional as F
from .module import Module


class _MaxPoolNd(Module):
    """Max pooling layer: keeps PyTorch's arguments and calls ``_fn`` (the functional form,
    which checks them) in ``forward``."""

    _fn = staticmethod(F.max_pool2d)

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, x):
        """Pool ``x`` ((N, C, H, W) for 2-D, (N, C, L) for 1-D); ValueError on a bad shape."""
        return self._fn(
            x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode
        )

    def extra_repr(self) -> str:
        """The window and stride, as shown in the repr."""
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}"


class _AvgPoolNd(Module):
    """Average pooling layer: keeps PyTorch's arguments and calls ``_fn`` (the functional
    form, which checks them) in ``forward``."""

    _fn = staticmethod(F.avg_pool2d)

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x):
        """Pool ``x`` ((N, C, H, W) for 2-D, (N, C, L) for 1-D); ValueError on a bad shape."""
        return self._fn(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
        )

    def extra_repr(self) -> str:
        """The window and stride, as shown in the repr."""
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}"


class MaxPool2d(_MaxPoolNd):
    """2-D max pooling over (N, C, H, W) input (:func:`tapegrad.nn.functional.max_pool2d`).

    Parameters
    ----------
    kernel_size : int or (int, int)
        The window.
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int or (int, int), default 0
        Implicit ``-inf`` padding on each side; at most half the window.
    dilation : int or (int, int), default 1
        Spacing between window elements.
    ceil_mode : bool, default False
        Round the output size up instead of down.
    """


class AvgPool2d(_AvgPoolNd):
    """2-D average pooling over (N, C, H, W) input (:func:`tapegrad.nn.functional.avg_pool2d`).

    Parameters
    ----------
    kernel_size : int or (int, int)
        The window.
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int or (int, int), default 0
        Zero padding on each side; at most half the window.
    ceil_mode : bool, default False
        Round the output size up instead of down.
    count_include_pad : bool, default True
        Count padded zeros in the divisor.
    """


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, whatever the input's
    (:func:`tapegrad.nn.functional.adaptive_avg_pool2d`).

    Parameters
    ----------
    output_size : int or (int, int)
        (Ho, Wo) of the output; ``1`` is global average pooling.
    """

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        """Pool ``x`` (N, C, H, W) to (N, C, Ho, Wo)."""
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        """The output size, as shown in the repr."""
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """``F.adaptive_max_pool2d``: max over windows chosen so the output is ``output_size``."""

    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x):
        """Pool ``x``; see the functional form for shapes."""
        return F.adaptive_max_pool2d(x, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        """Text shown inside the parentheses of the module's repr."""
        return f"output_size={self.output_size}"


class MaxPool1d(_MaxPoolNd):
    """``F.max_pool1d`` over (N, C, L) input; arguments as :class:`MaxPool2d`'s, ints."""

    _fn = staticmethod(F.max_pool1d)


class AvgPool1d(_AvgPoolNd):
    """``F.avg_pool1d`` over (N, C, L) input; arguments as :class:`AvgPool2d`'s, ints."""

    _fn = staticmethod(F.avg_pool1d)
