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
        gr = diff * (g * scale)  # d/dx (x - y)^2 = 2 (x - y), elementwise for 'none' too
        return gr, -gr


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        fail(fn, f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class NLLLoss(Function):
    """-input[n, target[n]] of log-probabilities (N, C), mean over non-ignored rows."""

    @staticmethod
    def forward(ctx: Context, logp, target, reduction="mean", ignore_index=-100):
        fn = "nll_loss"
        check_float(fn, input=logp)
        _check_targets(fn, logp, target, ignore_index)
        _check_reduction(fn, reduction)
        n = logp.shape[0]
        keep = target != ignore_index
        safe_t = np.where(keep, target, 0)
        picked = np.where(keep, -logp[np.arange(n), safe_t], 0).astype(logp.dtype)
        count = max(int(keep.sum()), 1) if reduction == "mean" else 1
        ctx.save_for_backward(safe_t, keep)
        ctx.shape, ctx.dtype, ctx.reduction, ctx.count = logp.shape, logp.dtype, reduction, count
        if reduction == "none":
            return picked
        return np.asarray(picked.sum() / count, dtype=logp.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        t, keep = ctx.saved_arrays
        n = ctx.shape[0]
        grad = np.zeros(ctx.shape, dtype=ctx.dtype)
        scale = g if ctx.reduction == "none" else np.full(n, g / ctx.count)
        grad[np.arange(n), t] = np.where(keep, -scale, 0)
        return grad, None


class BCEWithLogits(Function):
    """Binary cross-entropy of logits x against targets y in [0, 1], stable for any x:

    loss = max(x, 0) - x*y + log(1 + exp(-|x|)); with ``pos_weight`` p the positive term
    is weighted: (1 - y) x + (1 + (p - 1) y) softplus(-x).
    """

    @staticmethod
    def forward(ctx: Context, x, y, pos_weight=None, reduction="mean"):
        fn = "binary_cross_entropy_with_logits"
        check_float(fn, input=x, target=y)
        _check_reduction(fn, reduction)
        if x.shape != y.shape:
            fail(fn, f"input and target shapes differ: {x.shape} vs {y.shape}")
        sp_neg = np.logaddexp(0, -x)  # softplus(-x) = log(1 + exp(-x)), stable
        if pos_weight is None:
            loss = (1 - y) * x + sp_neg
            lw = None
        else:
            pw = np.asarray(pos_weight, dtype=x.dtype)
            try:
                fits = np.broadcast_shapes(pw.shape, x.shape) == x.shape
            except ValueError:
                fits = False
            if not fits:
                fail(
                    fn,
                    f"pos_weight of shape {pw.shape} does not broadcast against input "
                    f"{x.shape} (it weights the last axis: shape ({x.shape[-1]},) or 1)",
                )
            lw = 1 + (pw - 1) * y
            loss = (1 - y) * x + lw * sp_neg
        ctx.save_for_backward(x, y, sp_neg, lw)
        ctx.reduction, ctx.pos_weight = reduction, pos_weight
        if reduction == "none":
            return loss.astype(x.dtype, copy=False)
        total = loss.mean() if reduction == "mean" else loss.sum()
        return np.asarray(total, dtype=x.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        x, y, sp_neg, lw = ctx.saved_arrays
        sig_neg = np.exp(-sp_neg - x)  # sigmoid(-x) = exp(-softplus(x)); softplus(x) = sp_neg+x
        if lw is None:
            gx = (1 - y) - sig_neg
            gy = -x
        else:
            pw = np.asarray(ctx.pos_weight, dtype=x.dtype)
            gx = (1 - y) - lw * sig_neg
            gy = -x + (pw - 1) * sp_neg
        scale = g if ctx.reduction == "none" else (g / x.size if ctx.reduction == "mean" else g)
        return (gx * scale).astype(x.dtype, copy=False), (gy * scale).astype(x.dtype, copy=False)
