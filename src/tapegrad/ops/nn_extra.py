"""NumPy ops behind nn layers without compiled kernels: embedding lookup, adaptive max
pooling. Each checks its arguments before any work and has a closed-form backward."""

from __future__ import annotations

import numpy as np

from ..autograd import Context, Function, linear_backward_graph
from .checks import check_float, fail
from .pool import adaptive_out_size


def check_indices(fn: str, idx: np.ndarray, n: int, name: str = "input") -> None:
    if idx.dtype.kind not in "iu":
        fail(fn, f"{name} must hold integer indices, got dtype {idx.dtype}", TypeError)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        fail(
            fn,
            f"{name} indices must lie in [{-n}, {n - 1}] for a dimension of size {n}, got "
            f"range [{idx.min()}, {idx.max()}]",
            IndexError,
        )


class Embedding(Function):
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``indices`` of any shape.

    The gradient of a row sums over every lookup of it; the ``padding_idx`` row gets none.
    """

    @staticmethod
    def check(weight, indices, padding_idx=None) -> tuple:
        """Float 2-D weight, integer indices in range; returns forward's arguments."""
        fn = "embedding"
        check_float(fn, weight=weight)
        if weight.ndim != 2:
            fail(fn, f"weight must be 2-D (num_embeddings, embedding_dim), got {weight.shape}")
        check_indices(fn, indices, weight.shape[0])
        return weight, indices, padding_idx

    @staticmethod
    def forward(ctx: Context, weight, indices, padding_idx=None):
        ctx.save_for_backward(indices)
        ctx.shape, ctx.padding_idx = weight.shape, padding_idx
        return weight[indices]

    @staticmethod
    def backward(ctx: Context, g):
        (idx,) = ctx.saved_arrays
        gw = np.zeros(ctx.shape, dtype=g.dtype)
        np.add.at(gw, idx.reshape(-1), g.reshape(-1, ctx.shape[1]))
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return gw, None

    @staticmethod
    def _transpose(ctx: Context, v):
        (idx,) = ctx.saved_arrays
        v = np.array(v)
        if ctx.padding_idx is not None:
            v[ctx.padding_idx] = 0
        return v[idx]

    backward_graph = linear_backward_graph(backward, _transpose)


def _bounds(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: [floor(i n / m), ceil((i + 1) n / m))."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


class AdaptiveMaxPool2d(Function):
    """``apply(x, output_size)``: max over PyTorch's adaptive windows; the gradient goes to
    the first maximum."""

    @staticmethod
    def check(x, output_size) -> tuple:
        """Validate an adaptive_max_pool2d call; returns forward's arguments."""
        return x, adaptive_out_size("adaptive_max_pool2d", x, output_size)

    @staticmethod
    def forward(ctx: Context, x, out_hw):
        n, c, h, w = x.shape
        oh, ow = out_hw
        y = np.empty((n, c, oh, ow), dtype=x.dtype)
        idx = np.empty((n, c, oh, ow), dtype=np.int64)
        for i, (h0, h1) in enumerate(_bounds(h, oh)):
            for j, (w0, w1) in enumerate(_bounds(w, ow)):
                win = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
                k = np.argmax(win, axis=2)
                # a NaN is the maximum, as in PyTorch
                nan = np.isnan(win)
                if nan.any():
                    k = np.where(nan.any(axis=2), np.argmax(nan, axis=2), k)
                kh, kw = np.divmod(k, w1 - w0)
                idx[:, :, i, j] = (h0 + kh) * w + (w0 + kw)
                y[:, :, i, j] = np.take_along_axis(win, k[..., None], axis=2)[..., 0]
        ctx.save_for_backward(idx)
        ctx.x_shape = x.shape
        return y

    @staticmethod
    def backward(ctx: Context, g):
        (idx,) = ctx.saved_arrays
        n, c, h, w = ctx.x_shape
        gx = np.zeros((n, c, h * w), dtype=g.dtype)
        np.add.at(
            gx,
            (np.arange(n)[:, None, None], np.arange(c)[None, :, None], idx.reshape(n, c, -1)),
            g.reshape(n, c, -1),
        )
        return gx.reshape(ctx.x_shape)

    @staticmethod
    def _transpose(ctx: Context, v):
        (idx,) = ctx.saved_arrays
        n, c = idx.shape[:2]
        flat = np.asarray(v).reshape(n, c, -1)
        return np.take_along_axis(flat, idx.reshape(n, c, -1), axis=2).reshape(idx.shape)

    backward_graph = linear_backward_graph(backward, _transpose)
