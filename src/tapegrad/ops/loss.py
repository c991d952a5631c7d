"""Losses. ``cross_entropy`` fuses log-softmax and NLL: one stable pass, one saved array."""

from __future__ import annotations

import numpy as np

from ..autograd import Context, Function
from .activation import _log_softmax
from .checks import check_float, fail


def _check_targets(fn: str, logits: np.ndarray, target: np.ndarray, ignore_index: int) -> None:
    if logits.ndim != 2:
        fail(fn, f"input must be 2-D (N, C) logits, got shape {logits.shape}")
    if target.dtype.kind not in "iu":
        fail(fn, f"target must hold integer class indices, got dtype {target.dtype}", TypeError)
    if target.shape != (logits.shape[0],):
        fail(
            fn,
            f"target must have shape ({logits.shape[0]},) for input {logits.shape}, "
            f"got {target.shape}",
        )
    valid = target[target != ignore_index]
    if valid.size and (valid.min() < 0 or valid.max() >= logits.shape[1]):
        fail(
            fn,
            f"target values must lie in [0, {logits.shape[1] - 1}], got range "
            f"[{valid.min()}, {valid.max()}]",
        )


class CrossEntropy(Function):
    """Mean (or sum/none) of -log softmax(x)[target], with label smoothing and ignore_index."""

    @staticmethod
    def forward(
        ctx: Context, logits, target, reduction="mean", label_smoothing=0.0, ignore_index=-100
    ):
        fn = "cross_entropy"
        check_float(fn, input=logits)
        _check_targets(fn, logits, target, ignore_index)
        if not 0.0 <= label_smoothing <= 1.0:
            fail(fn, f"label_smoothing must lie in [0, 1], got {label_smoothing}")
        if reduction not in ("mean", "sum", "none"):
            fail(fn, f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        n, c = logits.shape
        logp = _log_softmax(logits, axis=1)
        keep = target != ignore_index
        safe_t = np.where(keep, target, 0)
        nll = -logp[np.arange(n), safe_t]
        if label_smoothing:
            # mean of logp as a sum of logp / C: no overflow when logits span float32's range
            nll = (1 - label_smoothing) * nll - label_smoothing * (logp / c).sum(axis=1)
        nll = np.where(keep, nll, 0).astype(logits.dtype)
        count = max(int(keep.sum()), 1) if reduction == "mean" else 1
        ctx.save_for_backward(logp, safe_t, keep)
        ctx.reduction, ctx.count, ctx.smooth = reduction, count, label_smoothing
        if reduction == "none":
            return nll
        return np.asarray(nll.sum() / count, dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        logp, t, keep = ctx.saved_arrays
        n, c = logp.shape
        grad = np.exp(logp)
        s = ctx.smooth
        grad[np.arange(n), t] -= 1 - s
        if s:
            grad -= s / c
        scale = g[:, None] if ctx.reduction == "none" else g / ctx.count
        grad *= scale
        grad[~keep] = 0
        return grad.astype(logp.dtype, copy=False), None


class MSELoss(Function):
    @staticmethod
    def forward(ctx: Context, a, b, reduction="mean"):
        check_float("mse_loss", input=a, target=b)
        if a.shape != b.shape:
            fail("mse_loss", f"input and target shapes differ: {a.shape} vs {b.shape}")
        if reduction not in ("mean", "sum", "none"):
            fail("mse_loss", f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        diff = a - b
        ctx.save_for_backward(diff)
        ctx.reduction = reduction
        sq = diff * diff
        if reduction == "none":
            return sq
        return np.asarray(sq.mean() if reduction == "mean" else sq.sum(), dtype=a.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        (diff,) = ctx.saved_arrays
        scale = 2 / diff.size if ctx.reduction == "mean" else 2
        gr = diff * (g if ctx.reduction == "none" else g * scale)
        return gr, -gr
