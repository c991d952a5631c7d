"""Elementwise ops with NumPy broadcasting; the tape sums gradients back to each shape."""

from __future__ import annotations

import numpy as np

from ..autograd import Context, Function


def _binary(name: str, ufunc: np.ufunc, a, b) -> np.ndarray:
    """``ufunc(a, b)``; a broadcasting failure names the op and both shapes."""
    try:
        return ufunc(a, b)
    except ValueError:
        raise ValueError(
            f"{name}: operands could not be broadcast together: shapes {np.shape(a)} "
            f"and {np.shape(b)}"
        ) from None


class Add(Function):
    @staticmethod
    def forward(ctx: Context, a, b):
        return _binary("add", np.add, a, b)

    @staticmethod
    def backward(ctx: Context, g):
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx: Context, a, b):
        return _binary("subtract", np.subtract, a, b)

    @staticmethod
    def backward(ctx: Context, g):
        return g, -g


class Mul(Function):
    @staticmethod
    def forward(ctx: Context, a, b):
        ctx.save_for_backward(a, b)
        return _binary("multiply", np.multiply, a, b)

    @staticmethod
    def backward(ctx: Context, g):
        a, b = ctx.saved_arrays
        ga = g * b if ctx.needs_input_grad[0] else None
        gb = g * a if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx: Context, a, b):
        ctx.save_for_backward(a, b)
        return _binary("divide", np.divide, a, b)

    @staticmethod
    def backward(ctx: Context, g):
        a, b = ctx.saved_arrays
        ga = g / b if ctx.needs_input_grad[0] else None
        gb = -g * a / (b * b) if ctx.needs_input_grad[1] else None
        return ga, gb


class Pow(Function):
    @staticmethod
    def forward(ctx: Context, a, b):
        out = _binary("pow", np.power, a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        a, b, out = ctx.saved_arrays
        ga = g * b * np.power(a, b - 1) if ctx.needs_input_grad[0] else None
        gb = None
        if len(ctx.needs_input_grad) > 1 and ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = g * out * np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx: Context, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx: Context, g):
        return -g


class Exp(Function):
    @staticmethod
    def forward(ctx: Context, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return g * out


class Log(Function):
    @staticmethod
    def forward(ctx: Context, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx: Context, g):
        (a,) = ctx.saved_arrays
        return g / a


class Tanh(Function):
    @staticmethod
    def forward(ctx: Context, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return g * (1 - out * out)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx: Context, a):
        # exp of a non-positive number only: no overflow for large |a|
        e = np.exp(-np.abs(a))
        out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return g * out * (1 - out)


class Abs(Function):
    @staticmethod
    def forward(ctx: Context, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx: Context, g):
        (a,) = ctx.saved_arrays
        return g * np.sign(a)


class Sqrt(Function):
    @staticmethod
    def forward(ctx: Context, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return g / (2 * out)


class Maximum(Function):
    """Elementwise max; ties send the gradient to the first argument."""

    @staticmethod
    def forward(ctx: Context, a, b):
        mask = _binary("maximum", np.greater_equal, a, b)
        ctx.save_for_backward(mask)
        return np.where(mask, a, b)

    @staticmethod
    def backward(ctx: Context, g):
        (mask,) = ctx.saved_arrays
        zero = g.dtype.type(0)
        return np.where(mask, g, zero), np.where(mask, zero, g)
