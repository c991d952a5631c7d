"""Matrix products: ``matmul`` (NumPy semantics, batched) and the fused ``linear``."""

from __future__ import annotations

import numpy as np

from tapegrad.kernels.blas import matmul

from ..autograd import Context, Function, fresh, graph_input
from .checks import check_float, fail


class MatMul(Function):
    """``a @ b`` with NumPy's rules (1-D operands, broadcast batch dimensions) through BLAS;
    errors name both shapes.
    """

    @staticmethod
    def forward(ctx: Context, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul: both operands need at least 1 dimension, got shapes {a.shape} "
                f"and {b.shape}"
            )
        try:
            out = matmul(a, b)
        except ValueError:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align (inner dimensions "
                f"{a.shape[-1]} and {b.shape[-2] if b.ndim > 1 else b.shape[0]}, batch "
                f"dimensions must broadcast)"
            ) from None
        ctx.save_for_backward(a, b)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        a, b = ctx.saved_arrays
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = matmul(g2, np.swapaxes(b2, -1, -2))
            ga = ga.reshape(ga.shape[:-2] + (-1,)) if a.ndim == 1 else ga
            ga = _sum_to(ga, a.shape)
        if ctx.needs_input_grad[1]:
            gb = matmul(np.swapaxes(a2, -1, -2), g2)
            gb = gb[..., 0] if b.ndim == 1 else gb
            gb = _sum_to(gb, b.shape)
        return ga, gb

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        a0, b0 = ctx.saved_arrays
        a, b = graph_input(inputs, 0, a0), graph_input(inputs, 1, b0)
        a2 = a.reshape((1,) + a0.shape) if a0.ndim == 1 else a
        b2 = b.reshape(b0.shape + (1,)) if b0.ndim == 1 else b
        g2 = g
        if a0.ndim == 1:
            g2 = g2.unsqueeze(-2)
        if b0.ndim == 1:
            g2 = g2.unsqueeze(-1)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = g2 @ _mT(b2)
            ga = ga.reshape(ga.shape[:-2] + (-1,)) if a0.ndim == 1 else ga
        if ctx.needs_input_grad[1]:
            gb = _mT(a2) @ g2
            gb = gb.reshape(gb.shape[:-1]) if b0.ndim == 1 else gb
        return ga, gb  # the tape sums broadcast batch dimensions back


def _mT(x):
    """Swap the last two axes of an array or a Tensor (recorded)."""
    return np.swapaxes(x, -1, -2) if isinstance(x, np.ndarray) else x.transpose(-1, -2)


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    return g.reshape(shape)


class Linear(Function):
    """y = x @ w.T + b for x (..., in), w (out, in), b (out,)."""

    @staticmethod
    def forward(ctx: Context, x, w, b=None):
        check_float("linear", input=x, weight=w, bias=b)
        if w.ndim != 2:
            fail("linear", f"weight must be 2-D (out_features, in_features), got shape {w.shape}")
        if x.ndim < 1 or x.shape[-1] != w.shape[1]:
            fail(
                "linear",
                f"input's last dimension must equal weight's in_features: "
                f"input {x.shape}, weight {w.shape}",
            )
        if b is not None and b.shape != (w.shape[0],):
            fail("linear", f"bias must have shape ({w.shape[0]},), got {b.shape}")
        ctx.save_for_backward(x, w)
        y = matmul(x, w.T)
        if b is not None:
            y += b
        return y

    @staticmethod
    def backward(ctx: Context, g):
        x, w = ctx.saved_arrays
        need = ctx.needs_input_grad
        gx = matmul(g, w) if need[0] else None
        g2 = g.reshape(-1, g.shape[-1])
        gw = matmul(g2.T, x.reshape(-1, x.shape[-1])) if need[1] else None
        gb = g2.sum(axis=0) if len(need) > 2 and need[2] else None
        return fresh(gx), fresh(gw), fresh(gb)  # each made here

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        x0, w0 = ctx.saved_arrays
        x, w = graph_input(inputs, 0, x0), graph_input(inputs, 1, w0)
        need = ctx.needs_input_grad
        gx = g @ w if need[0] else None
        g2 = g.reshape(-1, g.shape[-1])
        gw = _mT(g2) @ x.reshape(-1, x0.shape[-1]) if need[1] else None
        gb = g2.sum(axis=0) if len(need) > 2 and need[2] else None
        return gx, gw, gb
