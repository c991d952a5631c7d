"""Normalisation ops: batch norm (per channel), layer norm (per sample over trailing
axes) and group norm (per sample and channel group), PyTorch semantics.

Batch norm in training normalises with the biased batch variance and updates the running
variance with the unbiased one; its backward is the closed form (seed problem 6(b)) in
one fused kernel pass per channel. ``normalize_variance=False`` only subtracts the mean
(seed problem 2(b)): its input gradient is ``w * (gy - mean(gy))``, exactly zero for a
batch of one.
"""

from __future__ import annotations

import math

import numpy as np

from tapegrad.kernels.norm import (
    BatchNormEvalCall,
    BatchNormTrainCall,
    GroupNormCall,
    LayerNormCall,
)

from ..autograd import Context, Function, Summed, fresh, pending_grad
from . import tuning
from .checks import check_float, contiguous, fail, is_float

# --- argument checks -------------------------------------------------------------------


def _check_eps(fn: str, eps) -> float:
    if type(eps) is float and eps >= 0:  # the common call
        return eps
    if not isinstance(eps, (int, float, np.floating)) or isinstance(eps, bool) or eps < 0:
        fail(fn, f"eps must be a non-negative float, got {eps!r}")
    return float(eps)


def _check_vec(fn: str, name: str, a: np.ndarray | None, c: int, x_shape) -> None:
    if a is not None and a.shape != (c,):
        fail(fn, f"{name} must have shape ({c},) for input {x_shape}, got {a.shape}")


def batch_norm_args(
    fn: str, x, running_mean, running_var, weight, bias, training, momentum, eps
) -> float:
    """Validate batch-norm arguments on raw arrays; returns eps as a float."""
    check_float(fn, input=x, weight=weight, bias=bias)
    if x.ndim < 2:
        fail(fn, f"input must be at least 2-D (N, C, *), got shape {x.shape}")
    c = x.shape[1]
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if a is not None and not is_float(a):
            fail(fn, f"{name} must be float32 or float64, got {a.dtype}", TypeError)
        _check_vec(fn, name, a, c, x.shape)
    _check_vec(fn, "weight", weight, c, x.shape)
    _check_vec(fn, "bias", bias, c, x.shape)
    if (running_mean is None) != (running_var is None):
        fail(fn, "running_mean and running_var must both be given or both be None")
    if not training and running_mean is None:
        fail(fn, "eval mode (training=False) needs running_mean and running_var")
    if not (type(momentum) is float and 0 <= momentum <= 1) and (
        not isinstance(momentum, (int, float, np.floating))
        or isinstance(momentum, bool)
        or not 0 <= momentum <= 1
    ):
        fail(fn, f"momentum must be a float in [0, 1], got {momentum!r}")
    return _check_eps(fn, eps)


def _positive_ints(v: tuple) -> bool:
    for s in v:
        if type(s) is not int or s < 1:
            return False
    return True


def _normalized_shape(fn: str, normalized_shape) -> tuple[int, ...]:
    """An int or a sequence of ints (not str, float or bool), each positive."""
    v = normalized_shape
    if type(v) is tuple and _positive_ints(v):  # the common call
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v,)
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        fail(
            fn,
            f"normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}",
            TypeError,
        )
    v = tuple(v)
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in v):
        fail(
            fn,
            f"normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}",
            TypeError,
        )
    if any(s < 1 for s in v):
        fail(fn, f"normalized_shape must hold positive sizes, got {normalized_shape!r}")
    return tuple(int(s) for s in v)


def layer_norm_args(fn: str, x, normalized_shape, weight, bias, eps) -> tuple[tuple, float]:
    check_float(fn, input=x, weight=weight, bias=bias)
    shape = _normalized_shape(fn, normalized_shape)
    if not shape or x.shape[x.ndim - len(shape) :] != shape or len(shape) > x.ndim:
        fail(
            fn,
            f"normalized_shape {shape} must match the trailing dimensions of input {x.shape}",
        )
    for name, a in (("weight", weight), ("bias", bias)):
        if a is not None and a.shape != shape:
            fail(fn, f"{name} must have shape {shape} (normalized_shape), got {a.shape}")
    return shape, _check_eps(fn, eps)


def group_norm_args(fn: str, x, num_groups, weight, bias, eps) -> tuple[int, float]:
    check_float(fn, input=x, weight=weight, bias=bias)
    if x.ndim < 2:
        fail(fn, f"input must be at least 2-D (N, C, *), got shape {x.shape}")
    if not isinstance(num_groups, (int, np.integer)) or isinstance(num_groups, bool):
        fail(fn, f"num_groups must be an int, got {num_groups!r}", TypeError)
    c = x.shape[1]
    if num_groups < 1 or c % num_groups:
        fail(fn, f"num_groups={num_groups} must be positive and divide the channels of {x.shape}")
    _check_vec(fn, "weight", weight, c, x.shape)
    _check_vec(fn, "bias", bias, c, x.shape)
    return int(num_groups), _check_eps(fn, eps)


# --- batch norm ----------------------------------------------------------------------------


class BatchNorm(Function):
    """``apply(x, weight, bias, running_mean=, running_var=, training=, momentum=, eps=,
    normalize_variance=)``; x (N, C, *), weight/bias (C,) or None; running stats are
    arrays updated in place (training) or used (eval). Checked by :meth:`check`."""

    @staticmethod
    def check(
        x,
        weight=None,
        bias=None,
        running_mean=None,
        running_var=None,
        training=True,
        momentum=0.1,
        eps=1e-5,
        normalize_variance=True,
    ) -> tuple:
        """Validate a batch_norm call (``batch_norm_args``); returns forward's arguments."""
        fn = "batch_norm"
        rm, rv = running_mean, running_var
        eps = batch_norm_args(fn, x, rm, rv, weight, bias, training, momentum, eps)
        training, normalize_variance = bool(training), bool(normalize_variance)
        if training and normalize_variance and x.shape[0] * math.prod(x.shape[2:]) == 1:
            fail(fn, f"training needs more than one value per channel, got input {x.shape}")
        return (
            x, weight, bias, running_mean, running_var, training, float(momentum), eps,
            normalize_variance,
        )  # fmt: skip

    @staticmethod
    def forward(
        ctx: Context,
        x,
        weight=None,
        bias=None,
        running_mean=None,
        running_var=None,
        training=True,
        momentum=0.1,
        eps=1e-5,
        normalize_variance=True,
    ):
        """Batch norm of ``x`` (training or eval); the running statistics updated in place.

        The signature is the op's own (the ONNX export and ``inference.optimize`` bind
        recorded calls to it). When ``ctx.fuse_relu`` is set (``BatchNormReLU``), a variant
        that fuses the ReLU (training only) runs it in the same pass and ``ctx.relu_mask``
        holds its mask (``ctx.relu_fused``)."""
        relu = getattr(ctx, "fuse_relu", False)
        ctx.relu_fused = False
        n, c = x.shape[:2]
        s = math.prod(x.shape[2:])
        x3 = contiguous(x).reshape(n, c, s)
        w = np.ones(c) if weight is None else weight.astype(np.float64)
        b = np.zeros(c) if bias is None else bias.astype(np.float64)
        m = n * s
        if training:
            call = BatchNormTrainCall.of(x3, normalize_variance)
            mod = tuning.resolve(ctx, call, x3, w, b, eps)
            if m == 0:  # an empty batch: PyTorch's empty result, running statistics kept
                y, mean, invstd, var = np.empty_like(x3), np.zeros(c), np.ones(c), np.zeros(c)
            elif relu and call.fuses_relu(mod):
                y, mean, invstd, var, ctx.relu_mask = call.forward_relu(mod, x3, w, b, eps)
                ctx.relu_fused = True
            else:
                y, mean, invstd, var = call.forward(mod, x3, w, b, eps)
            if running_mean is not None and m > 0:
                unbiased = var * (m / (m - 1)) if m > 1 else var
                running_mean *= 1 - momentum
                running_mean += (momentum * mean).astype(running_mean.dtype)
                running_var *= 1 - momentum
                running_var += (momentum * unbiased).astype(running_var.dtype)
        else:
            mean = running_mean.astype(np.float64)
            if normalize_variance:
                invstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
            else:
                invstd = np.ones(c)
            scale, shift = w * invstd, b - mean * w * invstd
            call = BatchNormEvalCall.of(x3)
            mod = tuning.resolve(ctx, call, x3, scale, shift)
            y = call.forward(mod, x3, scale, shift)
        ctx.save_for_backward(x3, mean, invstd, w)
        ctx.mod, ctx.call, ctx.training = mod, call, training
        ctx.shape, ctx.wdtype = x.shape, (None if weight is None else weight.dtype)
        ctx.eps, ctx.nv = eps, normalize_variance
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx: Context, gy):
        """(gx, gw, gb) as the input gradients need them (None where not)."""
        x3, mean, invstd, w = ctx.saved_arrays
        gy3 = np.ascontiguousarray(gy).reshape(x3.shape)
        need = ctx.needs_input_grad + (False,) * 3
        acc = None  # the gradient the tape holds for x already, added by the kernel
        if need[0] and ctx.training and ctx.call.adds_into_gx(ctx.mod):
            acc = pending_grad(ctx, 0)
            if acc is not None and acc.flags.c_contiguous:
                acc = acc.reshape(x3.shape)
            else:
                acc = None
        if ctx.relu_fused:  # batch_norm_relu's mask applied inside the kernel
            mask = ctx.relu_mask.reshape(x3.shape)
            gx, gw, gb = ctx.call.backward_relu(ctx.mod, gy3, mask, x3, mean, invstd, w, acc)
        elif ctx.training:
            gx, gw, gb = ctx.call.backward(ctx.mod, gy3, x3, mean, invstd, w, acc)
        else:
            # eval: an affine map with constant statistics
            gx = ctx.call.forward(ctx.mod, gy3, w * invstd, np.zeros_like(w))
            g = gy3.astype(np.float64)
            gb = g.sum(axis=(0, 2))
            xhat = (x3 - mean[None, :, None]) * invstd[None, :, None]
            gw = (g * xhat).sum(axis=(0, 2))
        wd = ctx.wdtype
        gx = gx.reshape(ctx.shape) if need[0] else None
        return (
            Summed(gx) if acc is not None else gx,
            fresh(gw.astype(wd)) if need[1] else None,  # astype copies: ours alone
            fresh(gb.astype(wd)) if need[2] else None,
        )

    @staticmethod
    def backward_graph(ctx: Context, gy, inputs):
        """The backward as recorded ops: in training the batch statistics are recomputed
        from the input Tensor, so their dependence on it is differentiated too."""
        x3, mean, invstd, w = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,) * 3
        n, c, s = x3.shape
        dt = x3.dtype
        xt = inputs[0].reshape(n, c, s) if inputs[0] is not None else x3
        wt = inputs[1] if len(inputs) > 1 and inputs[1] is not None else w.astype(dt)
        wt = wt.reshape(1, c, 1)
        g3 = gy.reshape(n, c, s)
        axes = (0, 2)
        if ctx.training:
            m = n * s
            xc = xt - xt.mean(axis=axes, keepdims=True)
            if ctx.nv:
                inv = ((xc * xc).mean(axis=axes, keepdims=True) + ctx.eps) ** -0.5
                xhat = xc * inv
            else:
                inv, xhat = 1.0, xc
            gsum = g3.sum(axis=axes, keepdims=True)
            gxh = (g3 * xhat).sum(axis=axes, keepdims=True)
            gx = None
            if need[0]:
                if ctx.nv:
                    gx = (wt * inv / m) * (g3 * m - gsum - xhat * gxh)
                else:
                    gx = wt * (g3 - gsum / m)
        else:
            inv = invstd.astype(dt).reshape(1, c, 1)
            xhat = (xt - mean.astype(dt).reshape(1, c, 1)) * inv
            gsum = g3.sum(axis=axes, keepdims=True)
            gxh = (g3 * xhat).sum(axis=axes, keepdims=True)
            gx = g3 * (wt * inv) if need[0] else None
        return (
            gx.reshape(ctx.shape) if gx is not None else None,
            gxh.reshape(c) if need[1] else None,
            gsum.reshape(c) if need[2] else None,
        )


# --- layer norm and group norm (row kernels) ---------------------------------------------


def _norm_graph(xt, gt, wt, axes, eps, need_x):
    """Recorded gradients of ``y = xhat * w (+ b)`` with ``xhat`` normalised over ``axes``
    (statistics recomputed from ``xt``, so their dependence on it is differentiated):
    (gx or None, sum of g * xhat, sum of g), the sums kept over ``axes``."""
    xc = xt - xt.mean(axis=axes, keepdims=True)
    inv = ((xc * xc).mean(axis=axes, keepdims=True) + eps) ** -0.5
    xhat = xc * inv
    gx = None
    if need_x:
        gxh = gt if wt is None else gt * wt
        gx = inv * (
            gxh
            - gxh.mean(axis=axes, keepdims=True)
            - xhat * (gxh * xhat).mean(axis=axes, keepdims=True)
        )
    return gx, gt * xhat


class _RowNorm:
    """The shared body of layer norm and group norm: the rows of ``x2`` (the input seen as
    (rows, K)) normalised by the record's row kernels."""

    @staticmethod
    def run(ctx: Context, call, x2, w, b, eps: float, shape: tuple):
        """Resolve and run the forward kernel; the output in the input's ``shape``."""
        mod = tuning.resolve(ctx, call, x2, w, b, eps)
        y, mean, invstd = call.forward(mod, x2, w, b, eps)
        ctx.save_for_backward(x2, mean, invstd, w)
        ctx.mod, ctx.call, ctx.shape, ctx.eps = mod, call, shape, eps
        return y.reshape(shape)

    @staticmethod
    def grads(ctx: Context, gy) -> tuple:
        """(needs, gx in the input's shape or None, row gw, row gb) from the backward kernel."""
        x2, mean, invstd, w = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,) * 3
        gy2 = np.ascontiguousarray(gy).reshape(x2.shape)
        gx, gw, gb = ctx.call.backward(ctx.mod, gy2, x2, mean, invstd, w, need[1] or need[2])
        return need, (gx.reshape(ctx.shape) if need[0] else None), gw, gb


class LayerNorm(Function):
    """``apply(x, weight, bias, normalized_shape=, eps=)``: statistics over the trailing
    ``normalized_shape`` axes; weight/bias of that shape (elementwise affine) or None."""

    @staticmethod
    def check(x, weight=None, bias=None, normalized_shape=(), eps=1e-5) -> tuple:
        """Validate a layer_norm call (``layer_norm_args``); returns forward's arguments."""
        shape, eps = layer_norm_args("layer_norm", x, normalized_shape, weight, bias, eps)
        return x, weight, bias, shape, eps

    @staticmethod
    def forward(ctx: Context, x, weight=None, bias=None, normalized_shape=(), eps=1e-5):
        k = math.prod(normalized_shape)
        x2 = contiguous(x).reshape(-1, k)
        w = None if weight is None else contiguous(weight).reshape(1, k)
        if w is None and bias is not None:
            w = np.ones((1, k), dtype=x2.dtype)  # a bias alone: unit scale, so it is applied
        b = None
        if w is not None:
            b = np.zeros_like(w) if bias is None else contiguous(bias).reshape(1, k)
        ctx.nshape = tuple(normalized_shape)
        return _RowNorm.run(ctx, LayerNormCall.of(x2, w is not None), x2, w, b, eps, x.shape)

    @staticmethod
    def backward(ctx: Context, gy):
        need, gx, gw, gb = _RowNorm.grads(ctx, gy)
        dt = ctx.saved_arrays[0].dtype
        return (
            gx,
            fresh(gw.reshape(ctx.nshape).astype(dt)) if need[1] else None,
            fresh(gb.reshape(ctx.nshape).astype(dt)) if need[2] else None,
        )

    @staticmethod
    def backward_graph(ctx: Context, gy, inputs):
        x2, _, _, w = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,) * 3
        rows, k = x2.shape
        xt = inputs[0].reshape(rows, k) if inputs[0] is not None else x2
        wt = inputs[1] if len(inputs) > 1 and inputs[1] is not None else w
        wt = None if wt is None else wt.reshape(1, k)
        g2 = gy.reshape(rows, k)
        gx, gxhat = _norm_graph(xt, g2, wt, (1,), ctx.eps, need[0])
        return (
            gx.reshape(ctx.shape) if gx is not None else None,
            gxhat.sum(axis=0).reshape(ctx.nshape) if need[1] else None,
            g2.sum(axis=0).reshape(ctx.nshape) if need[2] else None,
        )


class GroupNorm(Function):
    """``apply(x, weight, bias, num_groups=, eps=)``: x (N, C, *), statistics per sample
    over each group of C/num_groups channels; weight/bias (C,) per channel or None."""

    @staticmethod
    def check(x, weight=None, bias=None, num_groups=1, eps=1e-5) -> tuple:
        """Validate a group_norm call (``group_norm_args``); returns forward's arguments."""
        groups, eps = group_norm_args("group_norm", x, num_groups, weight, bias, eps)
        return x, weight, bias, groups, eps

    @staticmethod
    def forward(ctx: Context, x, weight=None, bias=None, num_groups=1, eps=1e-5):
        n, c = x.shape[:2]
        s = math.prod(x.shape[2:])
        g, cg = num_groups, c // num_groups
        x2 = contiguous(x).reshape(n * g, cg * s)
        w = b = None
        if weight is None and bias is not None:
            weight = np.ones(c, dtype=x.dtype)  # a bias alone: unit scale, so it is applied
        if weight is not None:
            # per-channel affine expanded over the group's row: row r uses row r % groups
            w = np.repeat(weight.reshape(g, cg), s, axis=1)
            bb = np.zeros_like(weight) if bias is None else bias
            b = np.repeat(bb.reshape(g, cg), s, axis=1)
        ctx.gcs = (g, cg, s)
        return _RowNorm.run(ctx, GroupNormCall.of(x2, g, w is not None), x2, w, b, eps, x.shape)

    @staticmethod
    def backward(ctx: Context, gy):
        need, gx, gw, gb = _RowNorm.grads(ctx, gy)
        g, cg, s = ctx.gcs
        dt = ctx.saved_arrays[0].dtype

        def per_channel(a):
            return a.reshape(g, cg, s).sum(axis=2).reshape(g * cg).astype(dt)

        return (
            gx,
            fresh(per_channel(gw)) if need[1] else None,
            fresh(per_channel(gb)) if need[2] else None,
        )

    @staticmethod
    def backward_graph(ctx: Context, gy, inputs):
        x2, _, _, w = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,) * 3
        g, cg, s = ctx.gcs
        n = x2.shape[0] // g
        shape4 = (n, g, cg, s)
        xt = (inputs[0] if inputs[0] is not None else x2).reshape(shape4)
        wt = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
        if wt is None and w is not None:
            wt = w.reshape(g, cg, s)[:, :, :1]  # the per-channel weight (constant)
        wt = None if wt is None else wt.reshape(1, g, cg, 1)
        g4 = gy.reshape(shape4)
        gx, gxhat = _norm_graph(xt, g4, wt, (2, 3), ctx.eps, need[0])
        return (
            gx.reshape(ctx.shape) if gx is not None else None,
            gxhat.sum(axis=(0, 3)).reshape(g * cg) if need[1] else None,
            g4.sum(axis=(0, 3)).reshape(g * cg) if need[2] else None,
        )
