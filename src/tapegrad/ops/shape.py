"""Shape ops: views on the data whose backward routes the gradient back."""

from __future__ import annotations

import numpy as np

from ..autograd import Context, Function, linear_backward_graph


class Reshape(Function):
    """The same elements in a new shape; the gradient is reshaped back."""

    @staticmethod
    def forward(ctx: Context, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx: Context, g):
        return g.reshape(ctx.shape)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return Reshape.apply(g, ctx.shape)


class Permute(Function):
    """Dimensions reordered by ``dims``; the gradient goes through the inverse permutation."""

    @staticmethod
    def forward(ctx: Context, a, dims):
        ctx.inv = tuple(np.argsort(dims))
        return np.transpose(a, dims)

    @staticmethod
    def backward(ctx: Context, g):
        return np.transpose(g, ctx.inv)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return Permute.apply(g, ctx.inv)


class GetItem(Function):
    """NumPy indexing (basic and advanced); the gradient is scattered back with ``np.add.at``
    semantics.
    """

    @staticmethod
    def forward(ctx: Context, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        try:
            return np.asarray(a[index])
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor of shape {a.shape})") from None

    @staticmethod
    def backward(ctx: Context, g):
        out = np.zeros(ctx.shape, dtype=g.dtype)
        np.add.at(out, ctx.index, g)
        return out

    @staticmethod
    def _transpose(ctx: Context, v):
        return np.asarray(v[ctx.index])

    backward_graph = linear_backward_graph(backward, _transpose)


class Pad(Function):
    """Constant padding; ``pads`` is a ((before, after), ...) pair per axis."""

    @staticmethod
    def forward(ctx: Context, a, pads, value=0.0):
        ctx.slices = tuple(slice(b, b + n) for (b, _), n in zip(pads, a.shape))
        return np.pad(a, pads, constant_values=value)

    @staticmethod
    def backward(ctx: Context, g):
        return np.ascontiguousarray(g[ctx.slices])

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return GetItem.apply(g, ctx.slices)


class Concat(Function):
    """Arrays joined along ``axis``; the gradient is split back at the same bounds."""

    @staticmethod
    def forward(ctx: Context, *arrays, axis=0):
        ctx.axis = axis
        ctx.bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx: Context, g):
        return tuple(np.split(g, ctx.bounds, axis=ctx.axis))

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        edges = [0, *(int(b) for b in ctx.bounds), g.shape[ctx.axis]]
        lead = (slice(None),) * (ctx.axis % g.ndim)
        return tuple(GetItem.apply(g, lead + (slice(lo, hi),)) for lo, hi in zip(edges, edges[1:]))
