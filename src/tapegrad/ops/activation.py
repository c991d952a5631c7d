"""Activations: ReLU (kernel family ``relu``), the pointwise family (LeakyReLU, ELU, GELU,
SiLU, Hardswish, Hardsigmoid, Softplus, Mish: kernel family ``pointwise``), softmax and
log_softmax along an axis (stable for large inputs: the max is subtracted)."""

from __future__ import annotations

import math

import numpy as np

from tapegrad.kernels.activation import ReluCall
from tapegrad.kernels.pointwise import (
    EluCall,
    GeluCall,
    HardsigmoidCall,
    HardswishCall,
    LeakyReluCall,
    MishCall,
    PointwiseCall,
    SiluCall,
    SoftplusCall,
)

from ..autograd import (
    Context,
    Function,
    composite_backward_graph,
    fresh,
    graph_input,
    linear_backward_graph,
)
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


# --- the pointwise family (kernels/pointwise): one declared record per activation ---------


def _where_pos(x, a, b):
    """``a`` where ``x > 0`` else ``b``, recorded (the mask read from ``x``'s values)."""
    from .tensor_ops import Where

    data = x if isinstance(x, np.ndarray) else x.data
    return Where.apply(data > 0, a, b)


def _stable_softplus(x):
    """``log(1 + exp(x))`` with recorded ops, without overflow."""
    return x.relu() + ((-x.abs()).exp() + 1).log()


def _gelu_graph(ctx: Context, inputs):
    x = inputs[0]
    if ctx.call.approximate == "tanh":
        beta, kappa = math.sqrt(2.0 / math.pi), 0.044715
        return x * 0.5 * (((x + x * x * x * kappa) * beta).tanh() + 1)
    from .elementwise import Erf

    return x * 0.5 * (Erf.apply(x * math.sqrt(0.5)) + 1)


def _softplus_graph(ctx: Context, inputs):
    x, beta, thr = inputs[0], ctx.call.beta, ctx.call.threshold
    return _where_pos(x * beta - thr, x, _stable_softplus(x * beta) / beta)


class _Pointwise:
    """The shared part of the ``pointwise`` family's Functions (a mixin: each op is
    ``class GELU(_Pointwise, Function)`` with its declared call record as ``record``).

    ``check`` is the record's own validation (:meth:`PointwiseCall.of`), so ``F.*``, the
    layers and ``apply`` share it; ``forward`` writes y in one pass; ``backward`` reads g and
    the saved input in one pass, ``gx = g * f'(x)`` (``kernels/pointwise/reference.py``'s
    ``derivative`` is each activation's f')."""

    record: type[PointwiseCall] = PointwiseCall

    @classmethod
    def check(cls, a, **kwargs) -> tuple:
        """A float32/float64 input and the activation's arguments (``inplace`` accepted
        where PyTorch's function takes it); returns ``(a, call)``, forward's arguments."""
        return a, cls.record.of(a, **kwargs)

    @staticmethod
    def forward(ctx: Context, a, call: PointwiseCall):
        a = np.ascontiguousarray(a)
        mod = tuning.resolve(ctx, call, a)
        ctx.mod, ctx.call = mod, call
        ctx.save_for_backward(a)
        return call.forward(mod, a)

    @staticmethod
    def backward(ctx: Context, g):
        (a,) = ctx.saved_arrays
        return fresh(ctx.call.backward(ctx.mod, np.ascontiguousarray(g, dtype=a.dtype), a))


class LeakyReLU(_Pointwise, Function):
    """``x if x > 0 else negative_slope * x``; gradient ``1`` or ``negative_slope``."""

    record = LeakyReluCall

    backward_graph = composite_backward_graph(
        lambda ctx, ins: _where_pos(ins[0], ins[0], ins[0] * ctx.call.negative_slope)
    )


class ELU(_Pointwise, Function):
    """``x if x > 0 else alpha * (exp(x) - 1)``; gradient ``1`` or ``alpha * exp(x)``."""

    record = EluCall

    backward_graph = composite_backward_graph(
        lambda ctx, ins: _where_pos(ins[0], ins[0], (ins[0].exp() - 1) * ctx.call.alpha)
    )


class GELU(_Pointwise, Function):
    """``x * Phi(x)`` (``approximate="none"``) or PyTorch's tanh approximation."""

    record = GeluCall

    backward_graph = composite_backward_graph(_gelu_graph)


class SiLU(_Pointwise, Function):
    """``x * sigmoid(x)``; gradient ``s * (1 + x * (1 - s))``."""

    record = SiluCall

    backward_graph = composite_backward_graph(lambda ctx, ins: ins[0] * ins[0].sigmoid())


class Hardswish(_Pointwise, Function):
    """``x * clamp(x + 3, 0, 6) / 6``; gradient 0 at and below -3, 1 from 3 on."""

    record = HardswishCall

    backward_graph = composite_backward_graph(
        lambda ctx, ins: ins[0] * (ins[0] + 3).clamp(0, 6) / 6
    )


class Hardsigmoid(_Pointwise, Function):
    """``clamp(x + 3, 0, 6) / 6``; gradient 1/6 strictly between -3 and 3, else 0."""

    record = HardsigmoidCall

    backward_graph = composite_backward_graph(lambda ctx, ins: (ins[0] + 3).clamp(0, 6) / 6)


class Softplus(_Pointwise, Function):
    """``log(1 + exp(beta * x)) / beta``, ``x`` where ``beta * x > threshold``."""

    record = SoftplusCall

    backward_graph = composite_backward_graph(_softplus_graph)


class Mish(_Pointwise, Function):
    """``x * tanh(softplus(x))``."""

    record = MishCall

    backward_graph = composite_backward_graph(
        lambda ctx, ins: ins[0] * _stable_softplus(ins[0]).tanh()
    )


def _prelu_weight(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The weight shaped to broadcast over ``a``'s channel dimension (dimension 1)."""
    check_float("prelu", input=a, weight=w)
    if w.ndim > 1:
        fail("prelu", f"weight must be 0-D or 1-D, got shape {w.shape}")
    if w.size == 1:
        return w.reshape((1,) * a.ndim)
    channels = a.shape[1] if a.ndim >= 2 else 1
    if w.size != channels:
        fail(
            "prelu",
            f"weight has {w.size} elements but input of shape {a.shape} has {channels} "
            "channels (dimension 1); give 1 or that many",
        )
    return w.reshape((1, w.size) + (1,) * (a.ndim - 2))


class PReLU(Function):
    """``x if x > 0 else weight * x`` with one learnable slope per channel (dimension 1)
    or one for all. Plain NumPy (no kernel variants). Gradients: input ``g`` or
    ``g * weight``; weight ``sum(g * x)`` over the elements where ``not x > 0``."""

    @staticmethod
    def check(a, w) -> tuple:
        """Float input and weight of one dtype, the weight 1 or C elements; returns
        ``(a, w)``."""
        _prelu_weight(a, w)
        return a, w

    @staticmethod
    def forward(ctx: Context, a, w):
        wb = _prelu_weight(a, w)
        ctx.save_for_backward(a, w)
        return np.where(a > 0, a, wb * a).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx: Context, g):
        a, w = ctx.saved_arrays
        wb = _prelu_weight(a, w)
        pos = a > 0
        gx = np.where(pos, g, g * wb).astype(a.dtype, copy=False)
        gw = None
        if ctx.needs_input_grad[1]:
            contrib = np.where(pos, 0, g * a)
            if w.size == 1:
                gw = np.asarray(contrib.sum(), a.dtype).reshape(w.shape)
            else:
                axes = tuple(i for i in range(a.ndim) if i != 1)
                gw = contrib.sum(axis=axes).astype(a.dtype).reshape(w.shape)
        return fresh(gx), fresh(gw)

    @staticmethod
    def _graph(ctx: Context, inputs):
        a, w = ctx.saved_arrays
        x = graph_input(inputs, 0, a)
        wt = graph_input(inputs, 1, w)
        wb = wt.reshape(_prelu_weight(a, w).shape)
        return _where_pos(x, x, wb * x)

    backward_graph = composite_backward_graph(_graph)
