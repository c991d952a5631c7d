"""NumPy ops behind PyTorch's tensor vocabulary: joining and splitting, selection and
indexing, broadcasting copies, padding, casts, min/max along a dim, in-place writes.
Each is a Function with its backward beside its forward; argument checks come first."""

from __future__ import annotations

import numpy as np

from ..autograd import Context, Function, linear_backward_graph
from .checks import fail
from .shape import Pad


def norm_dim(fn: str, dim, ndim: int, name: str = "dim") -> int:
    """``dim`` as a non-negative axis of an ``ndim``-d tensor (PyTorch's range)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        fail(fn, f"{name} must be an int, got {dim!r}", TypeError)
    n = max(ndim, 1)
    if not -n <= dim < n:
        fail(fn, f"{name} {dim} is out of range for a {ndim}-d tensor (expected [{-n}, {n - 1}])")
    return int(dim) % n


class Stack(Function):
    @staticmethod
    def forward(ctx: Context, *arrays, axis=0):
        ctx.axis = axis
        return np.stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx: Context, g):
        return tuple(np.moveaxis(g, ctx.axis, 0))

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        lead = (slice(None),) * (ctx.axis % g.ndim)
        return tuple(g[lead + (i,)] for i in range(g.shape[ctx.axis]))


class Where(Function):
    """``a`` where ``cond`` else ``b`` (broadcast); each side gets the gradient where chosen."""

    @staticmethod
    def forward(ctx: Context, cond, a, b):
        ctx.save_for_backward(cond)
        try:
            return np.where(cond, a, b)
        except ValueError:
            fail(
                "where",
                f"condition, input and other could not be broadcast together: shapes "
                f"{np.shape(cond)}, {np.shape(a)} and {np.shape(b)}",
            )

    @staticmethod
    def backward(ctx: Context, g):
        (cond,) = ctx.saved_arrays
        zero = g.dtype.type(0)
        return None, np.where(cond, g, zero), np.where(cond, zero, g)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        (cond,) = ctx.saved_arrays
        zero = np.zeros((), dtype=g.dtype)
        return None, Where.apply(cond, g, zero), Where.apply(cond, zero, g)


class Clamp(Function):
    """Clip into [lo, hi]; the gradient passes where lo <= x <= hi (PyTorch's rule)."""

    @staticmethod
    def forward(ctx: Context, x, lo=None, hi=None):
        keep = np.ones(x.shape, dtype=bool)
        out = x
        if lo is not None:
            keep &= x >= lo
            out = np.maximum(out, lo)
        if hi is not None:
            keep &= x <= hi
            out = np.minimum(out, hi)
        if lo is not None and hi is not None:
            out = np.where(np.asarray(lo) > np.asarray(hi), hi, out)
        ctx.save_for_backward(keep)
        return np.asarray(out, dtype=x.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        (keep,) = ctx.saved_arrays
        return np.where(keep, g, g.dtype.type(0))

    backward_graph = linear_backward_graph(backward)  # a mask: its own transpose


class MinMax(Function):
    """Elementwise maximum (``op="max"``) or minimum; ties split the gradient evenly, and a
    NaN propagates, as in PyTorch."""

    @staticmethod
    def forward(ctx: Context, a, b, op="max"):
        name = "maximum" if op == "max" else "minimum"
        try:
            out = (np.maximum if op == "max" else np.minimum)(a, b)
        except ValueError:
            fail(name, f"shapes {np.shape(a)} and {np.shape(b)} could not be broadcast together")
        first = (a > b) if op == "max" else (a < b)
        tie = a == b
        ctx.save_for_backward(first, tie)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        first, tie = ctx.saved_arrays
        half = g / 2
        ga = np.where(first, g, np.where(tie, half, 0)).astype(g.dtype, copy=False)
        gb = np.where(first | tie, np.where(tie, half, 0), g).astype(g.dtype, copy=False)
        return ga, gb

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        first, tie = ctx.saved_arrays
        dt = g.dtype
        wa = np.where(first, 1, np.where(tie, 0.5, 0)).astype(dt)
        wb = np.where(first | tie, np.where(tie, 0.5, 0), 1).astype(dt)
        return g * wa, g * wb


class ReduceArg(Function):
    """Values of the max (or min) along ``axis`` with the index of the first one; the
    gradient goes to that index."""

    @staticmethod
    def forward(ctx: Context, x, axis=0, keepdim=False, op="max"):
        fn = op
        if x.shape[axis] == 0:
            fail(fn, f"cannot reduce over an empty dimension {axis} of shape {x.shape}")
        if op == "max":
            idx = np.argmax(x, axis=axis)
            nan = np.isnan(x).any(axis=axis) if x.dtype.kind == "f" else None
        else:
            idx = np.argmin(x, axis=axis)
            nan = np.isnan(x).any(axis=axis) if x.dtype.kind == "f" else None
        if nan is not None and nan.any():
            idx = np.where(nan, np.argmax(np.isnan(x), axis=axis), idx)
        idx = np.expand_dims(idx, axis)
        vals = np.take_along_axis(x, idx, axis=axis)
        ctx.save_for_backward(idx)
        ctx.shape, ctx.axis, ctx.keepdim = x.shape, axis, keepdim
        ctx.indices = idx if keepdim else np.squeeze(idx, axis)
        return vals if keepdim else np.squeeze(vals, axis)

    @staticmethod
    def backward(ctx: Context, g):
        (idx,) = ctx.saved_arrays
        if not ctx.keepdim:
            g = np.expand_dims(g, ctx.axis)
        out = np.zeros(ctx.shape, dtype=g.dtype)
        np.put_along_axis(out, idx, g, axis=ctx.axis)
        return out

    @staticmethod
    def _transpose(ctx: Context, v):
        (idx,) = ctx.saved_arrays
        vals = np.take_along_axis(np.asarray(v), idx, axis=ctx.axis)
        return vals if ctx.keepdim else np.squeeze(vals, ctx.axis)

    backward_graph = linear_backward_graph(backward, _transpose)


class Flip(Function):
    @staticmethod
    def forward(ctx: Context, x, dims=()):
        ctx.dims = dims
        return np.flip(x, dims).copy()

    @staticmethod
    def backward(ctx: Context, g):
        return np.flip(g, ctx.dims).copy()

    backward_graph = linear_backward_graph(backward)  # a flip is its own transpose


class Roll(Function):
    @staticmethod
    def forward(ctx: Context, x, shifts=0, dims=None):
        ctx.shifts, ctx.dims = shifts, dims
        return np.roll(x, shifts, dims)

    @staticmethod
    def backward(ctx: Context, g):
        neg = tuple(-s for s in ctx.shifts) if isinstance(ctx.shifts, tuple) else -ctx.shifts
        return np.roll(g, neg, ctx.dims)

    @staticmethod
    def _transpose(ctx: Context, v):
        return np.roll(v, ctx.shifts, ctx.dims)

    backward_graph = linear_backward_graph(backward, _transpose)


def check_index(fn: str, x: np.ndarray, dim: int, index: np.ndarray, same_rank: bool) -> None:
    if index.dtype.kind not in "iu":
        fail(fn, f"index must hold integers, got dtype {index.dtype}", TypeError)
    if same_rank and index.ndim != max(x.ndim, 1):
        fail(fn, f"index must have as many dimensions as input ({x.ndim}), got {index.shape}")
    n = x.shape[dim] if x.ndim else 1
    if index.size and (index.min() < -n or index.max() >= n):
        fail(
            fn,
            f"index values must lie in [{-n}, {n - 1}] for dimension {dim} of shape {x.shape}, "
            f"got range [{index.min()}, {index.max()}]",
            IndexError,
        )


class Gather(Function):
    """``out[i][j] = x[index[i][j]][j]`` along ``dim`` (``index`` may be smaller than x)."""

    @staticmethod
    def forward(ctx: Context, x, index, dim=0):
        fn = "gather"
        check_index(fn, x, dim, index, True)
        for d in range(x.ndim):
            if d != dim and index.shape[d] > x.shape[d]:
                fail(fn, f"index {index.shape} is larger than input {x.shape} in dimension {d}")
        sl = tuple(slice(0, s) if d != dim else slice(None) for d, s in enumerate(index.shape))
        ctx.save_for_backward(index)
        ctx.shape, ctx.dim, ctx.sl = x.shape, dim, sl
        return np.take_along_axis(x[sl], index, axis=dim)

    @staticmethod
    def backward(ctx: Context, g):
        (index,) = ctx.saved_arrays
        out = np.zeros(ctx.shape, dtype=g.dtype)
        sub = out[ctx.sl]
        _scatter_add_into(sub, ctx.dim, index, g)
        return out, None

    @staticmethod
    def _transpose(ctx: Context, v):
        (index,) = ctx.saved_arrays
        return np.take_along_axis(np.asarray(v)[ctx.sl], index, axis=ctx.dim)

    backward_graph = linear_backward_graph(backward, _transpose)


def _scatter_add_into(out: np.ndarray, dim: int, index: np.ndarray, src: np.ndarray) -> None:
    idx = list(np.indices(index.shape, sparse=True))
    idx[dim] = index
    np.add.at(out, tuple(idx), src[tuple(slice(0, s) for s in index.shape)])


class ScatterAdd(Function):
    """``out = x.copy(); out[index[i][j]][j] += src[i][j]`` along ``dim``."""

    @staticmethod
    def forward(ctx: Context, x, index, src, dim=0):
        fn = "scatter_add"
        check_index(fn, x, dim, index, True)
        if src.ndim != index.ndim or any(i > s for i, s in zip(index.shape, src.shape)):
            fail(fn, f"index {index.shape} must be no larger than src {src.shape}")
        for d in range(x.ndim):
            if d != dim and index.shape[d] > x.shape[d]:
                fail(fn, f"index {index.shape} is larger than input {x.shape} in dimension {d}")
        out = x.copy()
        _scatter_add_into(out, dim, index, src.astype(x.dtype, copy=False))
        ctx.save_for_backward(index)
        ctx.dim, ctx.src_shape = dim, src.shape
        return out

    @staticmethod
    def backward(ctx: Context, g):
        (index,) = ctx.saved_arrays
        gsrc = np.zeros(ctx.src_shape, dtype=g.dtype)
        sl = tuple(slice(0, s) for s in index.shape)
        gsrc[sl] = np.take_along_axis(g, index, axis=ctx.dim) if index.size else 0
        return g, None, gsrc

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        (index,) = ctx.saved_arrays
        gsrc = None
        if len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2]:
            gsrc = Gather.apply(g, index, dim=ctx.dim)
            if gsrc.shape != ctx.src_shape:  # src larger than index: zeros beyond it
                pads = tuple((0, s - i) for s, i in zip(ctx.src_shape, index.shape))
                gsrc = Pad.apply(gsrc, pads)
        return g, None, gsrc


class IndexSelect(Function):
    @staticmethod
    def forward(ctx: Context, x, index, dim=0):
        fn = "index_select"
        if index.ndim > 1:
            fail(fn, f"index must be 0-d or 1-d, got shape {index.shape}")
        check_index(fn, x, dim, index, False)
        ctx.save_for_backward(index.reshape(-1))
        ctx.shape, ctx.dim = x.shape, dim
        return np.take(x, index.reshape(-1), axis=dim)

    @staticmethod
    def backward(ctx: Context, g):
        (index,) = ctx.saved_arrays
        out = np.zeros(ctx.shape, dtype=g.dtype)
        moved = np.moveaxis(out, ctx.dim, 0)
        np.add.at(moved, index, np.moveaxis(g, ctx.dim, 0))
        return out, None

    @staticmethod
    def _transpose(ctx: Context, v):
        (index,) = ctx.saved_arrays
        return np.take(v, index, axis=ctx.dim)

    backward_graph = linear_backward_graph(backward, _transpose)


class Expand(Function):
    @staticmethod
    def forward(ctx: Context, x, shape=()):
        ctx.in_shape = x.shape
        return np.ascontiguousarray(np.broadcast_to(x, shape))

    @staticmethod
    def backward(ctx: Context, g):
        return g  # the tape sums broadcast axes back to the input's shape

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return g


class Repeat(Function):
    """``np.tile`` with ``reps`` at least as long as the input's rank."""

    @staticmethod
    def forward(ctx: Context, x, reps=()):
        shape = (1,) * (len(reps) - x.ndim) + x.shape
        ctx.shape, ctx.in_shape, ctx.reps = shape, x.shape, reps
        return np.tile(x.reshape(shape), reps)

    @staticmethod
    def backward(ctx: Context, g):
        inter = []
        for r, s in zip(ctx.reps, ctx.shape):
            inter += [r, s]
        g = g.reshape(inter).sum(axis=tuple(range(0, len(inter), 2)))
        return g.reshape(ctx.in_shape)

    @staticmethod
    def _transpose(ctx: Context, v):
        return np.tile(np.asarray(v).reshape(ctx.shape), ctx.reps)

    backward_graph = linear_backward_graph(backward, _transpose)


class PadMode(Function):
    """``np.pad`` with ``reflect`` / ``edge`` (replicate) / ``wrap`` (circular); the backward
    adds each output element's gradient to the input element it was copied from."""

    @staticmethod
    def forward(ctx: Context, x, pads=(), mode="reflect"):
        ctx.pads, ctx.mode, ctx.shape = pads, mode, x.shape
        return np.pad(x, pads, mode=mode)

    @staticmethod
    def backward(ctx: Context, g):
        src = np.pad(np.arange(int(np.prod(ctx.shape))).reshape(ctx.shape), ctx.pads, ctx.mode)
        out = np.zeros(int(np.prod(ctx.shape)), dtype=g.dtype)
        np.add.at(out, src.reshape(-1), g.reshape(-1))
        return out.reshape(ctx.shape)

    @staticmethod
    def _transpose(ctx: Context, v):
        return np.pad(v, ctx.pads, mode=ctx.mode)

    backward_graph = linear_backward_graph(backward, _transpose)


class Cast(Function):
    """A float-to-float cast; the gradient is cast back to the input's dtype."""

    @staticmethod
    def forward(ctx: Context, x, dtype=np.float32):
        ctx.in_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx: Context, g):
        return g.astype(ctx.in_dtype)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        return Cast.apply(g, dtype=ctx.in_dtype)


class SetItem(Function):
    """``out = x.copy(); out[index] = v``: x gets the gradient outside ``index``, v the
    gradient at ``index`` (summed over broadcasting)."""

    @staticmethod
    def forward(ctx: Context, x, v, index=()):
        out = x.copy()
        try:
            out[index] = v
        except (IndexError, ValueError) as e:
            fail(
                "setitem", f"{e} (tensor of shape {x.shape}, value of shape {np.shape(v)})", type(e)
            )
        ctx.index, ctx.v_shape = index, np.shape(v)
        return out

    @staticmethod
    def backward(ctx: Context, g):
        gx = g.copy()
        gx[ctx.index] = 0
        gv = g[ctx.index]
        return gx, np.asarray(gv)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        keep = np.ones(g.shape, dtype=g.dtype)
        keep[ctx.index] = 0
        return g * keep, g[ctx.index]
