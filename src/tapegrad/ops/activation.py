"""Activations: ReLU (kernel family ``relu``), softmax and log_softmax along an axis
(stable for large inputs: the max is subtracted)."""

from __future__ import annotations

import numpy as np

from tapegrad.kernels.activation import ReluCall

from ..autograd import Context, Function, linear_backward_graph
from . import tuning
from .checks import check_float, fail

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ReLU(Function):
    """y = +0.0 where x < 0, else x (NaN and -0.0 pass, as in PyTorch); the gradient flows
    where not y <= 0, so through NaN too. Saves a one-byte mask. float32/float64 run the
    ``relu`` kernels (one fused pass each way); other real dtypes plain NumPy."""

    @staticmethod
    def check(a) -> tuple:
        """A real-valued array (bool, int or float); returns forward's arguments."""
        if a.dtype.kind not in "biuf":
            fail("relu", f"input must be real-valued, got {a.dtype} (shape {a.shape})", TypeError)
        return (a,)

    @staticmethod
    def forward(ctx: Context, a):
        if a.dtype not in _KERNEL_DTYPES:
            mask = ~(a <= 0)
            ctx.mod = None
            ctx.save_for_backward(mask)
            return np.where(a < 0, a.dtype.type(0), a)
        a = np.ascontiguousarray(a)
        call = ReluCall.of(a)
        mod = tuning.resolve(ctx, call, a)
        y, mask = call.forward(mod, a)
        ctx.mod, ctx.call = mod, call
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx: Context, g):
        (mask,) = ctx.saved_arrays
        if ctx.mod is None or g.dtype not in _KERNEL_DTYPES:
            return np.where(mask.view(bool), g, 0)  # bool or uint8: one byte each
        return ctx.call.backward(ctx.mod, np.ascontiguousarray(g), mask)

    backward_graph = linear_backward_graph(backward)  # a mask: its own transpose


def _check(fn: str, a: np.ndarray, axis) -> int:
    """Float input and an int axis in range; returns the axis made non-negative."""
    check_float(fn, input=a)
    if a.ndim == 0:
        fail(fn, "input must have at least 1 dimension, got a 0-d array")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        fail(fn, f"dim must be an int, got {axis!r}", TypeError)
    if not -a.ndim <= axis < a.ndim:
        fail(fn, f"dim {axis} is out of range for input of shape {a.shape}")
    return int(axis) % a.ndim


def _log_softmax(a: np.ndarray, axis: int) -> np.ndarray:
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
    """``apply(a, axis=-1)``: softmax along ``axis``."""

    @staticmethod
    def check(a, axis=-1) -> tuple:
        """Float input, an int axis in range; returns forward's arguments."""
        return a, _check("softmax", a, axis)

    @staticmethod
    def forward(ctx: Context, a, axis=-1):
        out = np.exp(_log_softmax(a, axis))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return out * (g - (g * out).sum(axis=ctx.axis, keepdims=True))

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        out = Softmax.apply(inputs[0], axis=ctx.axis)
        return out * (g - (g * out).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    """``apply(a, axis=-1)``: log-softmax along ``axis``."""

    @staticmethod
    def check(a, axis=-1) -> tuple:
        """Float input, an int axis in range; returns forward's arguments."""
        return a, _check("log_softmax", a, axis)

    @staticmethod
    def forward(ctx: Context, a, axis=-1):
        out = _log_softmax(a, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return g - np.exp(out) * g.sum(axis=ctx.axis, keepdims=True)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        out = LogSoftmax.apply(inputs[0], axis=ctx.axis)
        return g - out.exp() * g.sum(axis=ctx.axis, keepdims=True)
