"""Convolution ops: ``conv2d`` and ``conv1d`` (as conv2d over a height of 1).

Depthwise calls (``groups == C_in``, ``C_out`` a multiple of ``C_in``) run as their own op,
``depthwise_conv2d``, with dedicated memory-bound kernels: :func:`conv2d_function` picks.

Arguments follow PyTorch: NCHW input, weight (C_out, C_in/groups, kH, kW),
cross-correlation, int or pair stride/padding/dilation, ``padding="same"|"valid"``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from tapegrad.kernels.conv import Conv2dCall, ConvLikeCall
from tapegrad.kernels.depthwise import DepthwiseConv2dCall

from ..autograd import Context, Function, Summed, fresh, graph_input, pending_grad
from . import tuning
from .checks import check_float, check_ndim, contiguous, fail, int_tuple


def conv_args(fn: str, x, w, b, stride, padding, dilation, groups, nd: int = 2):
    """Validate conv arguments; returns (stride, padding, dilation, groups, pad_extra).

    ``padding`` comes back symmetric per axis; ``pad_extra`` holds the extra trailing
    pixel 'same' needs for even effective kernel sizes (PyTorch pads that on the right).
    """
    layout = "(N, C, H, W)" if nd == 2 else "(N, C, L)"
    check_float(fn, input=x, weight=w, bias=b)
    check_ndim(fn, "input", x, (nd + 2,), layout)
    check_ndim(fn, "weight", w, (nd + 2,), "(C_out, C_in/groups, *kernel)")
    if not (type(groups) is int and groups >= 1) and (
        not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1
    ):
        fail(fn, f"groups must be a positive int, got {groups!r}")
    stride = int_tuple(fn, "stride", stride, nd, 1)
    dilation = int_tuple(fn, "dilation", dilation, nd, 1)
    c, o = x.shape[1], w.shape[0]
    if c % groups or o % groups:
        fail(
            fn,
            f"groups={groups} must divide both input channels ({c}) and output "
            f"channels ({o}); input {x.shape}, weight {w.shape}",
        )
    if w.shape[1] * groups != c:
        fail(
            fn,
            f"weight expects {w.shape[1] * groups} input channels "
            f"({w.shape[1]} per group x {groups} groups) but input has {c}: "
            f"input {x.shape}, weight {w.shape}",
        )
    if b is not None and b.shape != (o,):
        fail(fn, f"bias must have shape ({o},), got {b.shape}")
    kernel = w.shape[2:]
    extra = (0,) * nd
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                fail(fn, f"padding='same' needs stride 1, got stride {stride}")
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            padding = tuple(t // 2 for t in total)
            extra = tuple(t - 2 * (t // 2) for t in total)
        else:
            fail(fn, f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    else:
        padding = int_tuple(fn, "padding", padding, nd, 0)
    spatial = x.shape[2:]
    for ax in range(nd):
        eff = dilation[ax] * (kernel[ax] - 1) + 1
        if spatial[ax] + 2 * padding[ax] + extra[ax] < eff:
            fail(
                fn,
                f"kernel size {tuple(kernel)} (dilated to {eff} along axis {ax}) is "
                f"larger than the padded input: input {x.shape}, padding {padding}",
            )
    return stride, padding, dilation, int(groups), extra


class ConvFunction(Function):
    """The shared body of the conv-family Functions: a subclass's ``forward`` names its
    arguments and calls :meth:`run` with its call record class; forward and backward
    run the record's kernel calls."""

    @staticmethod
    def run(ctx: Context, record: type[ConvLikeCall], x, w, b, *args):
        x, w, b = contiguous(x), contiguous(w), contiguous(b)
        call = record.of(x, w, *args)
        mod = tuning.resolve(ctx, call, x, w, b)
        ctx.save_for_backward(x, w)
        ctx.call, ctx.mod = call, mod
        return call.forward(mod, x, w, b)

    @staticmethod
    def backward(ctx: Context, gy):
        x, w = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,) * 3
        gy = np.ascontiguousarray(gy)  # no copy when gy is already C-contiguous
        fused = getattr(ctx.mod, "backward_with_bias", None) if need[2] else None
        gb = None
        into = getattr(ctx.mod, "backward_accumulate", None) if need[0] else None
        acc = pending_grad(ctx, 0, writable=True) if into is not None else None
        if acc is not None and acc.flags.c_contiguous:
            # the variant adds x's gradient into the one the tape holds for x already
            # (a tensor read by two convolutions: resnet8's shortcut and its first conv)
            gx, gw = into(gy, x, w, *ctx.call.args(), need[1], acc)
            if need[2]:
                gb = channel_sum(gy)
            return Summed(gx), fresh(gw), fresh(gb)
        if fused is not None:
            # the variant may sum the bias gradient in its own pass over gy (else gb is None)
            gx, gw, gb = fused(gy, x, w, *ctx.call.args(), need[0], need[1])
        else:
            gx, gw = ctx.call.backward(ctx.mod, gy, x, w, need[0], need[1])
        if need[2] and gb is None:
            gb = channel_sum(gy)
        # the kernels allocate gx and gw and the sum makes gb: a leaf may keep them as they
        # are (gx unless it shares memory with an array the tape or the caller holds)
        if gx is not None and not any(np.may_share_memory(gx, a) for a in (gy, x, w)):
            gx = fresh(gx)
        return gx, fresh(gw), fresh(gb)

    @staticmethod
    def backward_graph(ctx: Context, gy, inputs):
        """The backward as recorded ops: the input gradient and the weight gradient are
        the call's own backward kernels wrapped as ops (:class:`ConvGradInput`,
        :class:`ConvGradWeight`), whose gradients are again the call's kernels; so every
        variant of conv2d, depthwise and transposed conv differentiates to any order."""
        x, w = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,) * 3
        gx = gw = gb = None
        if need[0]:
            gx = ConvGradInput.apply(
                gy, graph_input(inputs, 1, w), fixed=x, call=ctx.call, mod=ctx.mod
            )
        if need[1]:
            gw = ConvGradWeight.apply(
                gy, graph_input(inputs, 0, x), fixed=w, call=ctx.call, mod=ctx.mod
            )
        if need[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb


def channel_sum(gy: np.ndarray) -> np.ndarray:
    """The bias gradient of a conv-family call: C-contiguous ``gy`` (N, O, *spatial)
    summed over every axis but the channel axis, in ``gy``'s dtype.

    Two contiguous reductions instead of one over strided axes: the images added
    element by element (one vector pass over gy), then each channel's row of the partial
    sum added pairwise. Returns a new (O,) array.
    """
    n, o = gy.shape[0], gy.shape[1]
    if gy.size == 0:
        return np.zeros(o, dtype=gy.dtype)
    per_image = gy.reshape(n, -1)
    rows = np.add.reduce(per_image, axis=0) if n > 1 else per_image[0]
    return np.add.reduce(rows.reshape(o, -1), axis=1)


class ConvCallForward(ConvFunction):
    """A conv-family call's forward without bias, on a call record already made (the
    gradient-of-gradient ops run it)."""

    @staticmethod
    def forward(ctx: Context, x, w, call=None, mod=None):
        x, w = contiguous(x), contiguous(w)
        ctx.save_for_backward(x, w)
        ctx.call, ctx.mod = call, mod
        return call.forward(mod, x, w, None)


class ConvLinearMap(Function):
    """One of the two linear maps of a conv-family call's backward, as an op:
    ``apply(gy, operand, fixed=, call=, mod=)``. Its ``side`` says which: the input gradient
    ``gx = B_x(gy, w)`` (:class:`ConvGradInput`: operand ``w``, fixed ``x``) or the weight
    gradient ``gw = B_w(gy, x)`` (:class:`ConvGradWeight`: operand ``x``, fixed ``w``). It
    is linear in ``gy`` and in the operand: its gradients are the call's forward (for
    ``gy``) and the other side's map (for the operand)."""

    side: ClassVar[int] = 0  # 0: the input gradient; 1: the weight gradient
    other: ClassVar[type[ConvLinearMap]]

    @classmethod
    def _xw(cls, fixed, operand) -> tuple:
        """(x, w) of a kernel call: ``fixed`` in this side's place, ``operand`` in the other."""
        return (fixed, operand) if cls.side == 0 else (operand, fixed)

    @classmethod
    def forward(cls, ctx: Context, gy, operand, fixed=None, call=None, mod=None):
        gy, operand = contiguous(gy), contiguous(operand)
        ctx.save_for_backward(gy, operand)
        ctx.call, ctx.mod = call, mod
        return call.backward(mod, gy, *cls._xw(fixed, operand), cls.side == 0, cls.side == 1)[
            cls.side
        ]

    @classmethod
    def backward(cls, ctx: Context, gg):
        gy, operand = ctx.saved_arrays
        gg = np.ascontiguousarray(gg)
        need = ctx.needs_input_grad
        x, w = cls._xw(gg, operand)
        ggy = ctx.call.forward(ctx.mod, x, w, None) if need[0] else None
        other = cls.other.side
        g = ctx.call.backward(ctx.mod, gy, x, w, other == 0, other == 1)[other] if need[1] else None
        return ggy, g

    @classmethod
    def backward_graph(cls, ctx: Context, gg, inputs):
        gy, operand = ctx.saved_arrays
        need = ctx.needs_input_grad
        call, mod = ctx.call, ctx.mod
        ggy = g = None
        if need[0]:
            x, w = cls._xw(gg, graph_input(inputs, 1, operand))
            ggy = ConvCallForward.apply(x, w, call=call, mod=mod)
        if need[1]:
            g = cls.other.apply(graph_input(inputs, 0, gy), gg, fixed=operand, call=call, mod=mod)
        return ggy, g


class ConvGradInput(ConvLinearMap):
    """``gx = B_x(gy, w)``, the input gradient of a conv-family call as an op
    (``apply(gy, w, fixed=x, call=, mod=)``; see :class:`ConvLinearMap`)."""

    side = 0


class ConvGradWeight(ConvLinearMap):
    """``gw = B_w(gy, x)``, the weight gradient of a conv-family call as an op
    (``apply(gy, x, fixed=w, call=, mod=)``; see :class:`ConvLinearMap`)."""

    side = 1


ConvGradInput.other, ConvGradWeight.other = ConvGradWeight, ConvGradInput


def _check_conv2d(fn: str, x, w, b, stride, padding, dilation, groups) -> tuple:
    stride, padding, dilation, groups, extra = conv_args(
        fn, x, w, b, stride, padding, dilation, groups
    )
    if any(extra):
        fail(
            fn,
            f"padding='same' with kernel {w.shape[2:]} and dilation {dilation} pads one more "
            "pixel at the end than at the start: call tapegrad.nn.functional.conv2d, which "
            "adds that pixel before the op",
        )
    return x, w, b, stride, padding, dilation, groups


class Conv2d(ConvFunction):
    """``apply(x, w, b=None, stride=1, padding=0, dilation=1, groups=1)``: conv2d's
    arguments as in ``tapegrad.nn.functional.conv2d``, checked by :meth:`check`."""

    @staticmethod
    def check(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> tuple:
        """Validate a conv2d call (see ``conv_args``); returns forward's arguments."""
        return _check_conv2d("conv2d", x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def forward(
        ctx: Context, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    ):
        return ConvFunction.run(ctx, Conv2dCall, x, w, b, stride, padding, dilation, groups)


class DepthwiseConv2d(ConvFunction):
    """conv2d with ``groups == C_in``: weight (C_in*M, 1, kH, kW), channel multiplier M >= 1.

    ``apply`` takes conv2d's arguments; :meth:`check` also requires a depthwise call."""

    @staticmethod
    def check(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> tuple:
        """Validate a depthwise conv2d call; returns forward's arguments."""
        args = _check_conv2d("conv2d", x, w, b, stride, padding, dilation, groups)
        if not is_depthwise(x.shape[1], w.shape[0], args[-1]):
            fail(
                "conv2d",
                f"depthwise kernels need groups == input channels > 1 and output channels a "
                f"multiple of them; got groups={groups}, input {x.shape}, weight {w.shape}",
            )
        return args

    @staticmethod
    def forward(
        ctx: Context, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    ):
        args = (stride, padding, dilation, groups)
        return ConvFunction.run(ctx, DepthwiseConv2dCall, x, w, b, *args)


def is_depthwise(c_in: int, c_out: int, groups: int) -> bool:
    """True when a conv with these channels and groups is depthwise (multiplier >= 1)."""
    return groups == c_in and groups > 1 and c_out % c_in == 0


def conv2d_function(x_shape: tuple, w_shape: tuple, groups) -> type[Function]:
    """The Function that runs a conv2d call: depthwise kernels or general conv2d (whose
    ``check`` reports a call that fits neither)."""
    if (
        len(x_shape) > 1
        and len(w_shape) > 0
        and isinstance(groups, (int, np.integer))
        and is_depthwise(x_shape[1], w_shape[0], groups)
    ):
        return DepthwiseConv2d
    return Conv2d
