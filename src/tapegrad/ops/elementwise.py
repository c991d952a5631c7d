"""Elementwise ops with NumPy broadcasting; the tape sums gradients back to each shape."""

from __future__ import annotations

import math

import numpy as np

from tapegrad.kernels.fused import AddCall, same_shape_floats

from ..autograd import Context, Function, graph_input
from . import tuning
from .checks import fail


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
    """``a + b`` with NumPy broadcasting; the gradient ``g`` goes to both (the tape sums it
    back to each shape). Operands of one shape and float dtype run the ``add`` kernels
    (:class:`tapegrad.kernels.fused.AddCall`), others NumPy's ``add``.
    """

    @staticmethod
    def check(a, b) -> tuple:
        """Operands whose shapes broadcast (any dtypes: NumPy's promotion); returns
        forward's arguments."""
        try:
            np.broadcast_shapes(np.shape(a), np.shape(b))
        except ValueError:
            fail(
                "add",
                f"operands could not be broadcast together: shapes {np.shape(a)} and {np.shape(b)}",
            )
        return a, b

    @staticmethod
    def forward(ctx: Context, a, b):
        if same_shape_floats(a, b):
            call = AddCall.of(a)
            return call.forward(tuning.resolve(ctx, call, a, b), a, b)
        return _binary("add", np.add, a, b)

    @staticmethod
    def backward(ctx: Context, g):
        return g, g

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return g, g


class Sub(Function):
    """``a - b`` with broadcasting; gradients ``g`` and ``-g``."""

    @staticmethod
    def forward(ctx: Context, a, b):
        return _binary("subtract", np.subtract, a, b)

    @staticmethod
    def backward(ctx: Context, g):
        return g, -g

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return g, -g


class Mul(Function):
    """``a * b`` with broadcasting; gradients ``g * b`` and ``g * a`` (each only when needed)."""

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

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        a, b = ctx.saved_arrays
        need = ctx.needs_input_grad
        ga = g * graph_input(inputs, 1, b) if need[0] else None
        gb = g * graph_input(inputs, 0, a) if need[1] else None
        return ga, gb


class Div(Function):
    """``a / b`` with broadcasting; gradients ``g / b`` and ``-g * a / b**2``."""

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

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        a, b = ctx.saved_arrays
        a, b = graph_input(inputs, 0, a), graph_input(inputs, 1, b)
        need = ctx.needs_input_grad
        ga = g / b if need[0] else None
        gb = -g * a / (b * b) if need[1] else None
        return ga, gb


class Pow(Function):
    """``a ** b`` with broadcasting; the exponent's gradient ``g * a**b * log(a)`` is 0 where
    ``a <= 0``.
    """

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

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        a0, b0, _ = ctx.saved_arrays
        a, b = graph_input(inputs, 0, a0), graph_input(inputs, 1, b0)
        need = ctx.needs_input_grad
        ga = g * b * a ** (b - 1) if need[0] else None
        gb = None
        if len(need) > 1 and need[1]:
            pos = a0 > 0
            if isinstance(a, np.ndarray):
                log_a = np.log(np.where(pos, a0, 1))
            else:
                log_a = Where.apply(pos, a, np.ones((), dtype=a0.dtype)).log()
            gb = g * a**b * log_a * pos
        return ga, gb


class Neg(Function):
    """``-a``; gradient ``-g``."""

    @staticmethod
    def forward(ctx: Context, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx: Context, g):
        return -g

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return -g


class Exp(Function):
    """``exp(a)``; gradient ``g * exp(a)`` (the saved output)."""

    @staticmethod
    def forward(ctx: Context, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return g * out

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return g * Exp.apply(inputs[0])


class Log(Function):
    """``log(a)``; gradient ``g / a``."""

    @staticmethod
    def forward(ctx: Context, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx: Context, g):
        (a,) = ctx.saved_arrays
        return g / a

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return g / inputs[0]


class Tanh(Function):
    """``tanh(a)``; gradient ``g * (1 - tanh(a)**2)``."""

    @staticmethod
    def forward(ctx: Context, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return g * (1 - out * out)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        t = Tanh.apply(inputs[0])
        return g * (1 - t * t)


class Sigmoid(Function):
    """``1 / (1 + exp(-a))`` without overflow; gradient ``g * s * (1 - s)``."""

    @staticmethod
    def forward(ctx: Context, a):
        # exp of a non-positive number only, so no overflow for large |a|: with e =
        # exp(-|a|), sigmoid(a) = 1 / (1 + e) where a >= 0 and e / (1 + e) where a < 0.
        # The numerator is max([a >= 0], e) (e <= 1), chosen without branching: a masked
        # ufunc or np.where branches per element, which on mixed signs costs more than
        # all the other passes together. NaN stays NaN (np.maximum propagates it); +-inf
        # give 1 and 0.
        e, out = np.empty_like(a), np.empty_like(a)  # arrays, also for 0-d input
        np.abs(a, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)
        np.greater_equal(a, 0, out=out)
        np.maximum(out, e, out=out)
        np.add(e, 1, out=e)
        np.divide(out, e, out=out)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        gx = np.subtract(1, out)  # one new array, then in place: s (1 - s) g
        gx *= out
        gx *= g
        return gx

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        s = Sigmoid.apply(inputs[0])
        return g * s * (1 - s)


class Abs(Function):
    """``|a|``; gradient ``g * sign(a)`` (0 at 0)."""

    @staticmethod
    def forward(ctx: Context, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx: Context, g):
        (a,) = ctx.saved_arrays
        return g * np.sign(a)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        (a,) = ctx.saved_arrays
        return g * np.sign(a)


class Sqrt(Function):
    """``sqrt(a)``; gradient ``g / (2 sqrt(a))``."""

    @staticmethod
    def forward(ctx: Context, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (out,) = ctx.saved_arrays
        return g / (2 * out)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return g / (2 * Sqrt.apply(inputs[0]))


class Erf(Function):
    """The error function ``erf(a)`` (float64 inside, the input's dtype out); gradient
    ``g * 2/sqrt(pi) * exp(-a**2)``. GELU's recorded backward uses it."""

    @staticmethod
    def forward(ctx: Context, a):
        ctx.save_for_backward(a)
        return _erf(np.asarray(a, np.float64)).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx: Context, g):
        (a,) = ctx.saved_arrays
        return g * (_TWO_OVER_SQRT_PI * np.exp(-a * a)).astype(a.dtype, copy=False)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        a = inputs[0]
        return g * (-a * a).exp() * _TWO_OVER_SQRT_PI


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_erf = np.vectorize(math.erf, otypes=[np.float64])


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

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        (mask,) = ctx.saved_arrays
        zero = np.zeros((), dtype=g.dtype)
        return Where.apply(mask, g, zero), Where.apply(mask, zero, g)


from .tensor_ops import Where  # noqa: E402
