"""Reductions: sum, mean, max over an axis (or all), with ``keepdims``."""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Context, Function


def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"reduction: axis {a} is out of range for a {ndim}-d tensor")
        out.append(a % max(ndim, 1))
    return tuple(sorted(set(out)))


def _expand(g: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool):
    if not keepdims:
        g = np.expand_dims(g, axes) if axes else g
    return np.broadcast_to(g, shape)


def _expand_graph(g, ctx: Context):
    """The gradient Tensor of a reduction reshaped to keep the reduced axes (size 1)."""
    if ctx.keepdims or not ctx.axes:
        return g
    shape = list(g.shape)
    for a in ctx.axes:
        shape.insert(a, 1)
    return g.reshape(tuple(shape))


class Sum(Function):
    """Sum over ``axis`` (all when None), optionally keeping dimensions; the gradient is
    ``g`` broadcast back.
    """

    @staticmethod
    def forward(ctx: Context, a, axis=None, keepdims=False):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, _axes(axis, a.ndim), keepdims
        return np.asarray(a.sum(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, g):
        return _expand(g, ctx.shape, ctx.axes, ctx.keepdims).copy()

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return _expand_graph(g, ctx) + np.zeros(ctx.shape, dtype=g.dtype)


class Mean(Function):
    """Mean over ``axis`` (all when None); the gradient is ``g / count`` broadcast back."""

    @staticmethod
    def forward(ctx: Context, a, axis=None, keepdims=False):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, _axes(axis, a.ndim), keepdims
        ctx.count = math.prod(a.shape[i] for i in ctx.axes) if a.ndim else 1
        return np.asarray(a.mean(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, g):
        return _expand(g / ctx.count, ctx.shape, ctx.axes, ctx.keepdims).copy()

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return _expand_graph(g / ctx.count, ctx) + np.zeros(ctx.shape, dtype=g.dtype)


class Max(Function):
    """Max over axes; the gradient is split evenly between tied maxima."""

    @staticmethod
    def forward(ctx: Context, a, axis=None, keepdims=False):
        axes = _axes(axis, a.ndim)
        out = a.max(axis=axes, keepdims=True)
        mask = a == out
        ctx.save_for_backward(mask)
        ctx.axes, ctx.keepdims = axes, keepdims
        return np.asarray(out if keepdims else np.squeeze(out, axis=axes))

    @staticmethod
    def backward(ctx: Context, g):
        (mask,) = ctx.saved_arrays
        if not ctx.keepdims and ctx.axes:
            g = np.expand_dims(g, ctx.axes)
        count = mask.sum(axis=ctx.axes, keepdims=True)
        return (mask * (g / count)).astype(g.dtype, copy=False)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        (mask,) = ctx.saved_arrays
        count = mask.sum(axis=ctx.axes, keepdims=True)
        return _expand_graph(g, ctx) * (mask / count).astype(g.dtype, copy=False)
