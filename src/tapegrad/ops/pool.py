"""Pooling ops (PyTorch semantics: padding counts as -inf for max, ceil_mode windows
must start inside the input or left padding)."""

from __future__ import annotations

import numpy as np

import tapegrad.kernels as K

from ..autograd import Context, Function
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
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        fail(fn, f"padding {padding} must be at most half the kernel size {kernel}")
    out = tuple(
        pool_out_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)
    )
    if min(out) < 1:
        fail(
            fn,
            f"output size would be {out} for input {x.shape}, kernel {kernel}, "
            f"stride {stride}, padding {padding}, dilation {dilation}",
        )
    return kernel, stride, padding, dilation, out


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx: Context, x, kernel, stride, padding, dilation, out_hw):
        x = contiguous(x)
        sig = ("max_pool2d", x.shape, kernel, stride, padding, dilation, x.dtype.str)
        mod = K.resolve(
            "max_pool2d", sig, lambda m: m.forward(x, kernel, stride, padding, dilation, out_hw)
        )
        y, idx = mod.forward(x, kernel, stride, padding, dilation, out_hw)
        ctx.save_for_backward(idx)
        ctx.mod, ctx.x_shape = mod, x.shape
        return y

    @staticmethod
    def backward(ctx: Context, gy):
        (idx,) = ctx.saved_arrays
        return ctx.mod.backward(np.ascontiguousarray(gy), idx, ctx.x_shape)
