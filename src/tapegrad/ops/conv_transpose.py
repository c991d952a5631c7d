"""Transposed convolution ops: ``conv_transpose2d`` and ``conv_transpose1d`` (height 1).

PyTorch's semantics: input (N, C_in, H, W), weight (C_in, C_out/groups, kH, kW),
output (N, C_out, Ho, Wo) with Ho = (H-1)*stride - 2*padding + dilation*(kH-1)
+ output_padding + 1. ``output_padding`` must be smaller than stride or dilation.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from tapegrad.kernels.conv_transpose import ConvTranspose2dCall

from ..autograd import Context, fresh
from .checks import check_float, check_ndim, fail, int_tuple
from .conv import ConvFunction
from .fused import _conv_relu_forward, _ConvReLU


def conv_transpose_args(
    fn: str, x, w, b, stride, padding, output_padding, groups, dilation, nd: int = 2
):
    """Validate transposed-conv arguments; returns (stride, padding, output_padding,
    dilation, groups) as int tuples / int."""
    layout = "(N, C_in, H, W)" if nd == 2 else "(N, C_in, L)"
    check_float(fn, input=x, weight=w, bias=b)
    check_ndim(fn, "input", x, (nd + 2,), layout)
    check_ndim(fn, "weight", w, (nd + 2,), "(C_in, C_out/groups, *kernel)")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        fail(fn, f"groups must be a positive int, got {groups!r}")
    stride = int_tuple(fn, "stride", stride, nd, 1)
    padding = int_tuple(fn, "padding", padding, nd, 0)
    output_padding = int_tuple(fn, "output_padding", output_padding, nd, 0)
    dilation = int_tuple(fn, "dilation", dilation, nd, 1)
    c = x.shape[1]
    if w.shape[0] != c:
        fail(
            fn,
            f"weight's first dimension ({w.shape[0]}) must equal the input channels ({c}): "
            f"input {x.shape}, weight {w.shape}",
        )
    if c % groups:
        fail(fn, f"groups={groups} must divide the input channels ({c}): input {x.shape}")
    o = w.shape[1] * groups
    if b is not None and b.shape != (o,):
        fail(fn, f"bias must have shape ({o},), got {b.shape}")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            fail(
                fn,
                f"output_padding {output_padding} must be smaller than stride {stride} "
                f"or dilation {dilation}",
            )
    out = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip(
            x.shape[2:], stride, padding, dilation, w.shape[2:], output_padding
        )
    )
    if min(out) < 1:
        fail(
            fn,
            f"output size would be {out}: input {x.shape}, weight {w.shape}, stride "
            f"{stride}, padding {padding}, output_padding {output_padding}, dilation {dilation}",
        )
    return stride, padding, output_padding, dilation, int(groups)


class ConvTranspose2d(ConvFunction):
    """``apply(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1)``
    (note: dilation before groups, unlike ``conv_transpose2d``); forward and backward are
    the conv family's, with this op's call record."""

    #: the name bad arguments' errors give
    fn_name: ClassVar[str] = "conv_transpose2d"

    @classmethod
    def check(
        cls, x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1
    ) -> tuple:
        """Validate a transposed-conv call (``conv_transpose_args``, errors naming
        ``cls.fn_name``); returns forward's arguments."""
        args = conv_transpose_args(
            cls.fn_name, x, w, b, stride, padding, output_padding, groups, dilation
        )
        return (x, w, b, *args)

    @staticmethod
    def forward(
        ctx: Context,
        x,
        w,
        b=None,
        stride=(1, 1),
        padding=(0, 0),
        output_padding=(0, 0),
        dilation=(1, 1),
        groups=1,
    ):
        args = (stride, padding, output_padding, dilation, groups)
        return ConvFunction.run(ctx, ConvTranspose2dCall, x, w, b, *args)


class ConvTranspose2dReLU(ConvTranspose2d):
    """``relu(conv_transpose2d(x, w, b, ...))`` as one op (``apply``'s arguments are
    :class:`ConvTranspose2d`'s): the transposed convolution without its bias, then bias and
    ReLU in one in-place pass that also keeps the ReLU's mask; the backward masks the
    output gradient and sums the bias gradient in one pass, then runs the transposed
    convolution's backward kernels on the masked gradient. Values and gradients are those
    of the unfused composition (PyTorch's ReLU: NaN and -0.0 pass, the gradient flows
    through NaN). Arguments are validated by :meth:`ConvTranspose2d.check`, naming
    ``conv_transpose2d_relu``."""

    fn_name: ClassVar[str] = "conv_transpose2d_relu"

    @staticmethod
    def forward(
        ctx: Context,
        x,
        w,
        b=None,
        stride=(1, 1),
        padding=(0, 0),
        output_padding=(0, 0),
        dilation=(1, 1),
        groups=1,
    ):
        """The transposed convolution (any variant) without bias, then bias + ReLU in one
        in-place pass; a variant with a ``forward_relu`` kernel (``phase-cython``) applies
        them as it writes the output instead."""
        args = (stride, padding, output_padding, dilation, groups)
        return _conv_relu_forward(ctx, ConvTranspose2dCall, x, w, b, args)

    @staticmethod
    def backward(ctx: Context, gy):
        """A variant with a ``backward_relu`` kernel (``phase-cython``) masks the output
        gradient and sums the bias gradient as its gradient kernels read it; otherwise the
        mask and bias sum in one pass, then the transposed convolution's backward."""
        fused = getattr(ctx.mod, "backward_relu", None)
        if fused is not None:
            x, w = ctx.saved_arrays
            need = ctx.needs_input_grad + (False,) * 3
            out = fused(gy, ctx.relu_mask, x, w, *ctx.call.args(), need[0], need[1])
            if out is not None:
                gx, gw, gb = out
                return gx, fresh(gw), (fresh(gb) if need[2] else None)
        return _ConvReLU.backward(ctx, gy)

    backward_graph = _ConvReLU.backward_graph
