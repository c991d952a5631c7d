"""Fused ops: a ReLU run in the same pass as the op before it (kernel family ``fused``).

- :class:`Conv2dReLU` / :class:`DepthwiseConv2dReLU`: the convolution without its bias,
  then one pass that adds the bias and applies the ReLU in place (and writes the ReLU's
  mask), or a variant's ``forward_relu`` that applies them as it writes the output
  (``im2col-cython``); the backward masks the output gradient and sums the bias gradient
  in one pass, then runs the convolution's backward kernels.
- :class:`BatchNormReLU`: batch norm, then the ReLU in place on its fresh output; the
  backward masks the gradient before batch norm's backward.
- :class:`AddReLU`: ``relu(a + b)`` in one pass (a residual block's sum).

Each computes exactly what the unfused composition computes (the same kernels, the same
PyTorch ReLU semantics: NaN and -0.0 pass, the gradient flows through NaN) with one op on
the tape, one memory pass and one activation array fewer. ``backward_graph`` composes the
mask with the unfused op's rule, so higher-order gradients go through them too.
"""

from __future__ import annotations

import numpy as np

from tapegrad.kernels.conv import Conv2dCall
from tapegrad.kernels.depthwise import DepthwiseConv2dCall
from tapegrad.kernels.fused import AddReluCall, BiasReluCall

from ..autograd import Context, Function, fresh, linear_backward_graph
from . import tuning
from .checks import check_float, contiguous, fail
from .conv import Conv2d, ConvFunction, DepthwiseConv2d
from .norm import BatchNorm

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _relu_epilogue(ctx: Context, y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """relu(y + b[c]) in place on the fresh output ``y``; the mask kept in ``ctx``."""
    b = contiguous(b)
    call = BiasReluCall.of(y, b)
    mod = tuning.resolve(ctx, call, y, b)
    ctx.relu_mask = call.forward(mod, y, b)
    ctx.relu_call, ctx.relu_mod = call, mod
    return y


def _conv_relu_forward(ctx: Context, record, x, w, b, args: tuple) -> np.ndarray:
    """A convolution-family call (``record``: its call record class, ``args`` the rest of
    its arguments) without bias, then bias + ReLU: in one in-place pass, or by the
    variant's ``forward_relu`` kernel as it writes the output where it has one and takes
    the call (``im2col-cython``, ``phase-cython``). The mask is kept in ``ctx``."""
    x, w, b = contiguous(x), contiguous(w), contiguous(b)
    call = record.of(x, w, *args)
    mod = tuning.resolve(ctx, call, x, w, None)
    ctx.save_for_backward(x, w)
    ctx.call, ctx.mod = call, mod
    fused = getattr(mod, "forward_relu", None)
    out = fused(x, w, b, *args) if fused is not None else None
    if out is None:
        return _relu_epilogue(ctx, call.forward(mod, x, w, None), b)
    y, ctx.relu_mask = out
    ctx.relu_call = BiasReluCall.of(y, b)
    ctx.relu_mod = tuning.resolve(ctx, ctx.relu_call, y, b)
    return y


def _unmask(ctx: Context, g: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The output gradient through the ReLU, and its per-channel sum when there is a bias."""
    return ctx.relu_call.backward(ctx.relu_mod, np.ascontiguousarray(g), ctx.relu_mask)


def _mask_map(ctx: Context, v: np.ndarray) -> np.ndarray:
    """``v`` through the ReLU's mask: linear, its own transpose (for ``backward_graph``)."""
    if getattr(ctx, "relu_fused", False):  # masked inside batch norm's kernels
        return np.where(ctx.relu_mask.reshape(v.shape).view(bool), v, v.dtype.type(0))
    return ctx.relu_call.backward(ctx.relu_mod, np.ascontiguousarray(v), ctx.relu_mask)[0]


_masked_graph = linear_backward_graph(_mask_map).__func__


def _renamed(check, old: str, new: str):
    """The unfused op's ``check``, its messages naming the fused function instead."""

    def run(*args, **kwargs) -> tuple:
        try:
            return check(*args, **kwargs)
        except (TypeError, ValueError) as e:
            msg = str(e)
            if msg.startswith(old + ":"):
                raise type(e)(new + msg[len(old) :]) from None
            raise

    run.__doc__ = f"Validate a {new} call as {old}'s check does; returns forward's arguments."
    return staticmethod(run)


class _ConvReLU(ConvFunction):
    """The shared body of the fused convolutions (subclasses set ``record``)."""

    record = Conv2dCall

    @classmethod
    def forward(
        cls, ctx: Context, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    ):
        """The convolution (any variant of the record's op) without bias, then bias + ReLU
        in one in-place pass; a variant with a ``forward_relu`` kernel (``im2col-cython``)
        applies them as it writes the output instead."""
        return _conv_relu_forward(ctx, cls.record, x, w, b, (stride, padding, dilation, groups))

    @staticmethod
    def backward(ctx: Context, gy):
        """Mask (and bias sum) in one pass, then the convolution's backward kernels; a
        variant with a ``backward_relu`` kernel (``im2col-cython``) masks the output
        gradient and sums the bias gradient as its gradient kernels read it."""
        x, w = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,) * 3
        fused = getattr(ctx.mod, "backward_relu", None)
        if fused is not None:
            gy = np.ascontiguousarray(gy)
            out = fused(gy, ctx.relu_mask, x, w, *ctx.call.args(), need[0], need[1])
            if out is not None:
                gx, gw, gb = out
                return gx, fresh(gw), (fresh(gb) if need[2] else None)
        g, gb = _unmask(ctx, gy)
        gx, gw = ctx.call.backward(ctx.mod, g, x, w, need[0], need[1])
        return gx, fresh(gw), (fresh(gb) if need[2] else None)

    @staticmethod
    def backward_graph(ctx: Context, gy, inputs):
        """The mask as a recorded linear map, then the convolution's recorded rule."""
        return ConvFunction.backward_graph(ctx, _masked_graph(ctx, gy, inputs), inputs)


class Conv2dReLU(_ConvReLU, Conv2d):
    """``relu(conv2d(x, w, b, ...))`` as one op: conv2d's arguments and kernels."""

    record = Conv2dCall
    check = _renamed(Conv2d.check, "conv2d", "conv2d_relu")

    backward = _ConvReLU.backward
    backward_graph = _ConvReLU.backward_graph


class DepthwiseConv2dReLU(_ConvReLU, DepthwiseConv2d):
    """``relu(conv2d(x, w, b, groups=C))`` for depthwise calls, as one op."""

    record = DepthwiseConv2dCall
    check = _renamed(DepthwiseConv2d.check, "conv2d", "conv2d_relu")

    backward = _ConvReLU.backward
    backward_graph = _ConvReLU.backward_graph


def conv_relu_function(conv_fn: type[Function]) -> type[Function]:
    """The fused Function for a conv2d Function (:func:`tapegrad.ops.conv.conv2d_function`)."""
    return DepthwiseConv2dReLU if issubclass(conv_fn, DepthwiseConv2d) else Conv2dReLU


class BatchNormReLU(BatchNorm):
    """``relu(batch_norm(...))`` as one op: batch norm's arguments, kernels and running
    statistics, then the ReLU in place on its output."""

    check = _renamed(BatchNorm.check, "batch_norm", "batch_norm_relu")

    @staticmethod
    def forward(ctx: Context, x, *args, **kwargs):
        """Batch norm and the ReLU in one kernel pass where the variant fuses them
        (training), else batch norm then the ReLU in one in-place pass."""
        ctx.fuse_relu = True
        y = BatchNorm.forward(ctx, x, *args, **kwargs)
        return y if ctx.relu_fused else _relu_epilogue(ctx, y, None)

    @staticmethod
    def backward(ctx: Context, gy):
        """Batch norm's backward of the masked gradient (the mask inside its kernel when
        the forward fused it)."""
        return BatchNorm.backward(ctx, gy if ctx.relu_fused else _unmask(ctx, gy)[0])

    @staticmethod
    def backward_graph(ctx: Context, gy, inputs):
        """The mask as a recorded linear map, then batch norm's recorded rule."""
        return BatchNorm.backward_graph(ctx, _masked_graph(ctx, gy, inputs), inputs)


class AddReLU(Function):
    """``relu(a + b)``: one pass for operands of one shape and float dtype (NumPy's
    broadcasting and type promotion otherwise, with the same result)."""

    @staticmethod
    def check(a, b) -> tuple:
        """Float operands of one dtype and broadcastable shapes; returns forward's arguments."""
        fn = "add_relu"
        for name, v in (("input", a), ("other", b)):
            if not isinstance(v, np.ndarray):
                fail(fn, f"{name} must be a Tensor, got {type(v).__name__}", TypeError)
        check_float(fn, input=a, other=b)
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            fail(fn, f"input {a.shape} and other {b.shape} do not broadcast")
        return a, b

    @staticmethod
    def forward(ctx: Context, a, b):
        """The sum and the ReLU (output and mask) in one pass."""
        a, b = np.asarray(a), np.asarray(b)
        if a.shape == b.shape and a.dtype == b.dtype and a.dtype in _FLOATS:
            a, b = contiguous(a), contiguous(b)
            call = AddReluCall.of(a)
            mod = tuning.resolve(ctx, call, a, b)
            y, mask = call.forward(mod, a, b)
            ctx.relu_call, ctx.relu_mod, ctx.relu_mask = call, mod, mask
            return y
        y = np.add(a, b)
        ctx.relu_call = None
        ctx.relu_mask = ~(y <= 0)
        return np.where(y < 0, y.dtype.type(0), y)

    @staticmethod
    def _mask(ctx: Context, g):
        if ctx.relu_call is None:
            return np.where(ctx.relu_mask, g, g.dtype.type(0))
        return ctx.relu_call.backward(ctx.relu_mod, np.ascontiguousarray(g), ctx.relu_mask)

    @staticmethod
    def backward(ctx: Context, g):
        """The masked gradient for both operands (the tape sums broadcast axes)."""
        gm = AddReLU._mask(ctx, g)
        return gm, gm

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        """The mask as a recorded linear map, for both operands."""
        gm = _add_graph(ctx, g, inputs)
        return gm, gm


_add_graph = linear_backward_graph(AddReLU._mask).__func__
