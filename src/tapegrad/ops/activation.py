"""softmax and log_softmax along an axis, stable for large inputs (max subtracted)."""

from __future__ import annotations

import numpy as np

from ..autograd import Context, Function


def _log_softmax(a: np.ndarray, axis: int) -> np.ndarray:
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
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


class LogSoftmax(Function):
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
