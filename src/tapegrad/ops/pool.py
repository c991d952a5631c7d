"""Pooling ops: max_pool2d, avg_pool2d, adaptive_avg_pool2d (PyTorch semantics: padding
counts as -inf for max; ceil_mode windows must start inside the input or left padding;
avg divides by the window clipped to the padded input with count_include_pad, else by
the number of input pixels in it)."""

from __future__ import annotations

import numpy as np

from tapegrad.kernels.pool import AdaptiveAvgPool2dCall, AvgPool2dCall, MaxPool2dCall

from ..autograd import Context, Function, linear_backward_graph
from . import tuning
from .checks import check_float, check_ndim, contiguous, fail, int_tuple


def pool_out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1  # the last window would start in the right padding
    return out


def pool_args(fn: str, x, kernel_size, stride, padding, dilation, ceil_mode):
    check_float(fn, input=x)
    check_ndim(fn, "input", x, (4,), "(N, C, H, W)")
    kernel = int_tuple(fn, "kernel_size", kernel_size, 2, 1)
    stride = kernel if stride is None else int_tuple(fn, "stride", stride, 2, 1)
    padding = int_tuple(fn, "padding", padding, 2, 0)
    dilation = int_tuple(fn, "dilation", dilation, 2, 1)
    (kh, kw), (ph, pw) = kernel, padding
    if ph > kh // 2 or pw > kw // 2:
        fail(fn, f"padding {padding} must be at most half the kernel size {kernel}")
    h, w = x.shape[2:]
    out = (
        pool_out_size(h, kh, stride[0], ph, dilation[0], ceil_mode),
        pool_out_size(w, kw, stride[1], pw, dilation[1], ceil_mode),
    )
    if out[0] < 1 or out[1] < 1:
        fail(
            fn,
            f"output size would be {out} for input {x.shape}, kernel {kernel}, "
            f"stride {stride}, padding {padding}, dilation {dilation}",
        )
    return kernel, stride, padding, dilation, out


class MaxPool2d(Function):
    """``apply(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False)``, as
    ``max_pool2d``; forward runs with the checked sizes and the output size."""

    @staticmethod
    def check(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> tuple:
        """Validate a max_pool2d call (``pool_args``); returns forward's arguments."""
        args = pool_args("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
        return (x, *args)

    @staticmethod
    def forward(ctx: Context, x, kernel, stride, padding, dilation, out_hw):
        x = contiguous(x)
        call = MaxPool2dCall.of(x, kernel, stride, padding, dilation, out_hw)
        mod = tuning.resolve(ctx, call, x)
        y, idx = call.forward(mod, x)
        ctx.save_for_backward(idx)
        ctx.mod, ctx.call = mod, call
        return y

    @staticmethod
    def backward(ctx: Context, gy):
        (idx,) = ctx.saved_arrays
        return ctx.call.backward(ctx.mod, np.ascontiguousarray(gy), idx)

    @staticmethod
    def _transpose(ctx: Context, v):
        """Gather ``v`` (the input's shape) at each window's argmax: the forward with the
        recorded indices."""
        (idx,) = ctx.saved_arrays
        n, c, h, w = v.shape
        flat = idx.reshape(n * c, -1)
        out = np.take_along_axis(np.asarray(v).reshape(n * c, h * w), np.maximum(flat, 0), axis=1)
        out[flat < 0] = 0
        return out.reshape(idx.shape)

    backward_graph = linear_backward_graph(backward, _transpose)


class _AveragePool(Function):
    """The shared body of the averaging pools: a linear map of the input, whose backward
    is the record's backward kernel and whose transpose is its forward."""

    @staticmethod
    def run(ctx: Context, call, x):
        mod = tuning.resolve(ctx, call, x)
        ctx.mod, ctx.call = mod, call
        return call.forward(mod, x)

    @staticmethod
    def backward(ctx: Context, gy):
        return ctx.call.backward(ctx.mod, np.ascontiguousarray(gy))

    @staticmethod
    def _transpose(ctx: Context, v):
        return ctx.call.forward(ctx.mod, np.ascontiguousarray(v))

    backward_graph = linear_backward_graph(backward, _transpose)


class AvgPool2d(_AveragePool):
    """``apply(x, kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True)``, as ``avg_pool2d``."""

    @staticmethod
    def check(
        x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ) -> tuple:
        """Validate an avg_pool2d call (``pool_args``); returns forward's arguments."""
        kernel, stride, padding, _, out = pool_args(
            "avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode
        )
        return x, kernel, stride, padding, out, bool(count_include_pad)

    @staticmethod
    def forward(ctx: Context, x, kernel, stride, padding, out_hw, count_include_pad):
        x = contiguous(x)
        call = AvgPool2dCall.of(x, kernel, stride, padding, out_hw, count_include_pad)
        return _AveragePool.run(ctx, call, x)


def adaptive_out_size(fn: str, x, output_size) -> tuple[int, int]:
    """PyTorch's output_size: an int, or a pair whose None entries keep the input size."""
    check_float(fn, input=x)
    check_ndim(fn, "input", x, (4,), "(N, C, H, W)")
    if output_size is None or isinstance(output_size, (int, np.integer)):
        output_size = (output_size, output_size)
    try:
        pair = tuple(output_size)
    except TypeError:
        fail(fn, f"output_size must be an int or a pair, got {output_size!r}", TypeError)
    if len(pair) != 2:
        fail(fn, f"output_size must be an int or a pair, got {output_size!r}", TypeError)
    out = tuple(int(n) if o is None else o for o, n in zip(pair, x.shape[2:]))
    int_tuple(fn, "output_size", out, 2, 1)
    if min(x.shape[2:]) < 1:
        fail(fn, f"input must have a non-empty spatial size, got {x.shape}")
    return out


class AdaptiveAvgPool2d(_AveragePool):
    """``apply(x, output_size)``, as ``adaptive_avg_pool2d``."""

    @staticmethod
    def check(x, output_size) -> tuple:
        """Validate an adaptive_avg_pool2d call; returns forward's arguments."""
        return x, adaptive_out_size("adaptive_avg_pool2d", x, output_size)

    @staticmethod
    def forward(ctx: Context, x, out_hw):
        x = contiguous(x)
        return _AveragePool.run(ctx, AdaptiveAvgPool2dCall.of(x, out_hw), x)
