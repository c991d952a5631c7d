"""Losses. ``cross_entropy`` fuses log-softmax and NLL: one stable pass, one saved array."""

from __future__ import annotations

import numpy as np

from ..autograd import Context, Function, graph_input
from .activation import Softmax, _log_softmax
from .checks import check_float, fail
from .elementwise import Sigmoid
from .tensor_ops import Where


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


def _check_weight(fn: str, weight, c: int, dtype) -> np.ndarray | None:
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.dtype.kind not in "fiu":
        fail(fn, f"weight must be numeric, got dtype {w.dtype}", TypeError)
    if w.shape != (c,):
        fail(fn, f"weight must have shape ({c},) (one per class), got {w.shape}")
    return w.astype(dtype, copy=False)


class CrossEntropy(Function):
    """Mean (or sum/none) of -log softmax(x)[target], with class weights, label smoothing
    and ignore_index (PyTorch's formulas: a weighted mean divides by the targets' weights)."""

    @staticmethod
    def forward(
        ctx: Context,
        logits,
        target,
        reduction="mean",
        label_smoothing=0.0,
        ignore_index=-100,
        weight=None,
    ):
        fn = "cross_entropy"
        check_float(fn, input=logits)
        _check_targets(fn, logits, target, ignore_index)
        if not 0.0 <= label_smoothing <= 1.0:
            fail(fn, f"label_smoothing must lie in [0, 1], got {label_smoothing}")
        if reduction not in ("mean", "sum", "none"):
            fail(fn, f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        n, c = logits.shape
        w = _check_weight(fn, weight, c, logits.dtype)
        logp = _log_softmax(logits, axis=1)
        keep = target != ignore_index
        safe_t = np.where(keep, target, 0)
        nll = -logp[np.arange(n), safe_t]
        wt = None
        if w is not None:
            wt = np.where(keep, w[safe_t], 0)
            nll = nll * wt
        if label_smoothing:
            # mean of logp as a sum of logp / C: no overflow when logits span float32's range
            smooth = (logp / c).sum(axis=1) if w is None else (logp * (w / c)).sum(axis=1)
            nll = (1 - label_smoothing) * nll - label_smoothing * smooth
        nll = np.where(keep, nll, 0).astype(logits.dtype)
        if reduction != "mean":
            count = 1
        elif wt is not None:
            count = float(wt.sum())
        else:
            count = max(int(keep.sum()), 1)
        ctx.save_for_backward(logp, safe_t, keep, w, wt)
        ctx.reduction, ctx.count, ctx.smooth = reduction, count, label_smoothing
        if reduction == "none":
            return nll
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(nll.sum() / count, dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        logp, t, keep, w, wt = ctx.saved_arrays
        n, c = logp.shape
        grad = np.exp(logp)
        s = ctx.smooth
        rows = np.arange(n)
        if w is None:
            grad[rows, t] -= 1 - s
            if s:
                grad -= s / c
        else:
            p = grad
            grad = (1 - s) * wt[:, None] * p
            grad[rows, t] -= (1 - s) * wt
            if s:
                grad += (s / c) * (p * w.sum() - w)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = g[:, None] if ctx.reduction == "none" else g / ctx.count
        grad *= scale
        grad[~keep] = 0
        return grad.astype(logp.dtype, copy=False), None

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        logp, t, keep, w, wt = ctx.saved_arrays
        n, c = logp.shape
        s = ctx.smooth
        onehot = np.zeros((n, c), dtype=logp.dtype)
        onehot[np.arange(n), t] = 1
        if w is None:
            coef = np.ones((n, 1), dtype=logp.dtype)
            const = (1 - s) * onehot + s / c
        else:
            coef = ((1 - s) * wt + (s / c) * w.sum())[:, None]
            const = (1 - s) * wt[:, None] * onehot + (s / c) * w[None, :]
        coef = (coef * keep[:, None]).astype(logp.dtype)
        const = (const * keep[:, None]).astype(logp.dtype)
        p = Softmax.apply(inputs[0], axis=1)
        scale = g.reshape(n, 1) if ctx.reduction == "none" else g / ctx.count
        return (p * coef - const) * scale, None


class MSELoss(Function):
    """Squared error of same-shaped arrays, reduced by ``reduction``; gradients ``2 (a - b)
    g`` and its negative (divided by the count for the mean).
    """

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
        need = ctx.needs_input_grad + (True, True)
        return (gr if need[0] else None), (-gr if need[1] else None)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        (diff,) = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,)
        a, b = inputs[0], inputs[1] if len(inputs) > 1 else None
        if a is None:
            d = (diff + b.data) - b  # the input is a constant: diff + target
        elif b is None:
            d = a - (a.data - diff)  # the target is a constant
        else:
            d = a - b
        scale = 2 / diff.size if ctx.reduction == "mean" else 2
        gr = d * (g * scale)
        return (gr if need[0] else None), (-gr if need[1] else None)


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        fail(fn, f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class NLLLoss(Function):
    """-weight[target] * input[n, target[n]] of log-probabilities (N, C); the mean divides
    by the summed weights of the non-ignored rows."""

    @staticmethod
    def forward(ctx: Context, logp, target, reduction="mean", ignore_index=-100, weight=None):
        fn = "nll_loss"
        check_float(fn, input=logp)
        _check_targets(fn, logp, target, ignore_index)
        _check_reduction(fn, reduction)
        n = logp.shape[0]
        w = _check_weight(fn, weight, logp.shape[1], logp.dtype)
        keep = target != ignore_index
        safe_t = np.where(keep, target, 0)
        wt = keep.astype(logp.dtype) if w is None else np.where(keep, w[safe_t], 0)
        picked = (-logp[np.arange(n), safe_t] * wt).astype(logp.dtype)
        if reduction != "mean":
            count = 1
        elif w is not None:
            count = float(wt.sum())
        else:
            count = max(int(keep.sum()), 1)
        ctx.save_for_backward(safe_t, wt)
        ctx.shape, ctx.dtype, ctx.reduction, ctx.count = logp.shape, logp.dtype, reduction, count
        if reduction == "none":
            return picked
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(picked.sum() / count, dtype=logp.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        t, wt = ctx.saved_arrays
        n = ctx.shape[0]
        grad = np.zeros(ctx.shape, dtype=ctx.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = g if ctx.reduction == "none" else np.full(n, g / ctx.count)
        grad[np.arange(n), t] = -scale * wt
        return grad, None

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        t, wt = ctx.saved_arrays
        n = ctx.shape[0]
        m = np.zeros(ctx.shape, dtype=ctx.dtype)
        m[np.arange(n), t] = -wt
        scale = g.reshape(n, 1) if ctx.reduction == "none" else g / ctx.count
        return scale * m, None


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

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        x, y, sp_neg, lw = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,)
        xt = graph_input(inputs, 0, x)
        yt = graph_input(inputs, 1, y)
        if isinstance(xt, np.ndarray):
            sig_neg, softplus_neg = np.exp(-sp_neg - x), sp_neg
        else:
            sig_neg = Sigmoid.apply(-xt)
            softplus_neg = (-xt).relu() + ((-xt.abs()).exp() + 1).log()  # stable log(1 + e^-x)
        if lw is None:
            gx, gy = (1 - yt) - sig_neg, -xt
        else:
            pw = np.asarray(ctx.pos_weight, dtype=x.dtype)
            gx = (1 - yt) - (1 + (pw - 1) * yt) * sig_neg
            gy = -xt + (pw - 1) * softplus_neg
        scale = g if ctx.reduction == "none" else (g / x.size if ctx.reduction == "mean" else g)
        return (gx * scale if need[0] else None), (gy * scale if need[1] else None)


def _same_shape(fn: str, a: np.ndarray, b: np.ndarray) -> None:
    check_float(fn, input=a, target=b)
    if a.shape != b.shape:
        fail(fn, f"input and target shapes differ: {a.shape} vs {b.shape}")


def _reduce(loss: np.ndarray, reduction: str, dtype) -> np.ndarray:
    if reduction == "none":
        return loss.astype(dtype, copy=False)
    return np.asarray(loss.mean() if reduction == "mean" else loss.sum(), dtype=dtype)


def _scale(g, reduction: str, size: int):
    return g if reduction == "none" else (g / size if reduction == "mean" else g)


def _pair_graph(inputs, a_minus_b):
    """``a - b`` recorded from the inputs that require grad, the other side a constant
    recovered from the saved difference."""
    a, b = inputs[0], inputs[1] if len(inputs) > 1 else None
    if a is None:
        return (a_minus_b + b.data) - b
    if b is None:
        return a - (a.data - a_minus_b)
    return a - b


class PiecewiseLoss(Function):
    """L1, smooth L1 and Huber losses of ``d = input - target``:

    ``l1``: |d|; ``smooth_l1``: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta
    (beta 0 is L1); ``huber``: 0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta).
    """

    @staticmethod
    def forward(ctx: Context, a, b, kind="l1", reduction="mean", beta=1.0):
        fn = {"l1": "l1_loss", "smooth_l1": "smooth_l1_loss", "huber": "huber_loss"}[kind]
        _same_shape(fn, a, b)
        _check_reduction(fn, reduction)
        d = a - b
        ad = np.abs(d)
        if kind == "l1" or (kind == "smooth_l1" and beta == 0):
            loss, quad = ad, None
        elif kind == "smooth_l1":
            quad = ad < beta
            loss = np.where(quad, 0.5 * d * d / (beta if beta else 1), ad - 0.5 * beta)
        else:
            quad = ad <= beta
            loss = np.where(quad, 0.5 * d * d, beta * (ad - 0.5 * beta))
        ctx.save_for_backward(d, quad)
        ctx.kind, ctx.reduction, ctx.beta = kind, reduction, beta
        return _reduce(loss, reduction, a.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        d, quad = ctx.saved_arrays
        sign = np.sign(d)
        if quad is None:
            gd = sign
        elif ctx.kind == "smooth_l1":
            gd = np.where(quad, d / ctx.beta, sign)
        else:
            gd = np.where(quad, d, ctx.beta * sign)
        gd = (gd * _scale(g, ctx.reduction, d.size)).astype(d.dtype, copy=False)
        return gd, -gd

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        d, quad = ctx.saved_arrays
        sign = np.sign(d)
        if quad is None:
            gd = sign * _scale(g, ctx.reduction, d.size)
        else:
            dt = _pair_graph(inputs, d)
            inner = dt / ctx.beta if ctx.kind == "smooth_l1" else dt
            outer = sign if ctx.kind == "smooth_l1" else ctx.beta * sign
            gd = Where.apply(quad, inner, outer.astype(d.dtype)) * _scale(g, ctx.reduction, d.size)
        need = ctx.needs_input_grad + (False,)
        return (gd if need[0] else None), (-gd if need[1] else None)


class BCELoss(Function):
    """-w (y log p + (1 - y) log(1 - p)) of probabilities p; each log clamped at -100, as
    PyTorch does, so p = 0 or 1 gives a finite loss."""

    @staticmethod
    def forward(ctx: Context, p, y, weight=None, reduction="mean"):
        fn = "binary_cross_entropy"
        _same_shape(fn, p, y)
        _check_reduction(fn, reduction)
        if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
            fail(fn, f"input must hold probabilities in [0, 1], got range [{p.min()}, {p.max()}]")
        w = None
        if weight is not None:
            w = np.asarray(weight, dtype=p.dtype)
            try:
                fits = np.broadcast_shapes(w.shape, p.shape) == p.shape
            except ValueError:
                fits = False
            if not fits:
                fail(fn, f"weight of shape {w.shape} does not broadcast against input {p.shape}")
        with np.errstate(divide="ignore"):
            logp = np.maximum(np.log(p), -100)
            log1mp = np.maximum(np.log1p(-p), -100)
        loss = -(y * logp + (1 - y) * log1mp)
        if w is not None:
            loss = loss * w
        ctx.save_for_backward(p, y, w, logp, log1mp)
        ctx.reduction = reduction
        return _reduce(loss, reduction, p.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        p, y, w, logp, log1mp = ctx.saved_arrays
        eps = 1e-12  # PyTorch's clamp of p (1 - p) in the gradient's denominator
        gp = (p - y) / np.maximum(p * (1 - p), eps)
        gy = log1mp - logp
        if w is not None:
            gp, gy = gp * w, gy * w
        sc = _scale(g, ctx.reduction, p.size)
        return (gp * sc).astype(p.dtype, copy=False), (gy * sc).astype(p.dtype, copy=False)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        p, y, w, logp, log1mp = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,)
        pt, yt = graph_input(inputs, 0, p), graph_input(inputs, 1, y)
        gp = gy = None
        if need[0]:
            gp = (pt - yt) / (pt * (1 - pt)).clamp(min=1e-12)
        if need[1]:
            if isinstance(pt, np.ndarray):
                gy = log1mp - logp
            else:
                gy = (1 - pt).log().clamp(min=-100) - pt.log().clamp(min=-100)
        scale = _scale(g, ctx.reduction, p.size)
        if w is not None:
            scale = scale * w
        return (gp * scale if gp is not None else None), (gy * scale if gy is not None else None)


class KLDiv(Function):
    """Pointwise KL divergence of log-probabilities ``input`` from ``target``:
    ``target * (log target - input)`` (0 where target is 0), or with ``log_target``
    ``exp(target) * (target - input)``. ``batchmean`` divides the sum by the batch size."""

    @staticmethod
    def forward(ctx: Context, x, t, reduction="mean", log_target=False):
        fn = "kl_div"
        _same_shape(fn, x, t)
        if reduction not in ("mean", "sum", "none", "batchmean"):
            fail(fn, f"reduction must be 'mean', 'batchmean', 'sum' or 'none', got {reduction!r}")
        if log_target:
            et = np.exp(t)
            loss = et * (t - x)
        else:
            tlogt = np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0)
            loss = tlogt - t * x
        ctx.save_for_backward(x, t)
        ctx.reduction, ctx.log_target = reduction, log_target
        if reduction == "batchmean":
            n = x.shape[0] if x.ndim else 1
            return np.asarray(loss.sum() / n, dtype=x.dtype)
        return _reduce(loss, reduction, x.dtype)

    @staticmethod
    def backward(ctx: Context, g):
        x, t = ctx.saved_arrays
        if ctx.reduction == "batchmean":
            sc = g / (x.shape[0] if x.ndim else 1)
        else:
            sc = _scale(g, ctx.reduction, x.size)
        if ctx.log_target:
            et = np.exp(t)
            gx, gt = -et, et * (t - x) + et
        else:
            gx = -t
            with np.errstate(divide="ignore", invalid="ignore"):
                gt = np.where(t > 0, np.log(np.where(t > 0, t, 1)) + 1 - x, 0)
        return (gx * sc).astype(x.dtype, copy=False), (gt * sc).astype(x.dtype, copy=False)

    @staticmethod
    def backward_graph(ctx: Context, g, inputs):
        x, t = ctx.saved_arrays
        need = ctx.needs_input_grad + (False,)
        xt, tt = graph_input(inputs, 0, x), graph_input(inputs, 1, t)
        if ctx.reduction == "batchmean":
            sc = g / (x.shape[0] if x.ndim else 1)
        else:
            sc = _scale(g, ctx.reduction, x.size)
        gx = gt = None
        if ctx.log_target:
            et = tt.exp() if not isinstance(tt, np.ndarray) else np.exp(t)
            gx = -et * sc if need[0] else None
            gt = (et * (tt - xt) + et) * sc if need[1] else None
        else:
            gx = -tt * sc if need[0] else None
            if need[1]:
                pos = t > 0
                log_t = Where.apply(pos, tt, np.ones((), dtype=t.dtype)).log()
                gt = (log_t + 1 - xt) * pos * sc
        return gx, gt
