"""Problem 5(a)-(h): dropout on a one-example linear regression.

One data point x = [10, 1], y = 11 and a linear model y = w1 x1 + w2 x2 without bias.

(a) Least squares has a line of exact solutions; the minimum-norm one is
    x^T (x x^T)^-1 y = [1.0891, 0.1089].
(b) Gradient descent from w = 0 stays in the row space of x and reaches the same point.
(c) With dropout (rate 0.5, kept inputs scaled by 2 as ``nn.Dropout`` does) the expected
    loss is least squares on the four equally likely masked copies
    [[20, 2], [20, 0], [0, 2], [0, 0]] -> 11, solved by [0.3667, 3.6667].
(d) Training ``Dropout -> Linear`` with SGD at batch size 1 gives a spiky loss;
(e) a large batch (many masks per step) gives a smooth one, and weights close to (c).
(f) Without dropout w1 = 10 w2 and x1 carries 100x more of the output; with dropout the
    two terms 10 w1 and w2 come out about equal.
(g) Sweeping the dropout rate r: the minimizer of the expected loss
    (x x^T + r/(1-r) diag(x^2))^-1 x y moves smoothly for r > 0 and tends to
    [0.55, 5.5] as r -> 0+, but at r = 0 it jumps to the minimum-norm [1.0891, 0.1089].
(h) Adam without dropout lands near w1 = w2 (about [1, 1]): with many exact solutions the
    optimizer picks one, and Adam's per-coordinate step sizes move both weights alike;
    with dropout the solution is unique and Adam finds (c) as SGD does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import manual_seed, nn, optim
from ..nn import functional as F
from ..tensor import Tensor
from ._common import figure, fmt_vec, save, table

X = np.array([[10.0, 1.0]])
Y = np.array([[11.0]])
RATE = 0.5


@dataclass
class Run:
    """One training run: the loss and weights after every step."""

    rate: float
    batch: int
    optimizer: str
    losses: np.ndarray
    weights: np.ndarray  # (steps + 1, 2)

    @property
    def final(self) -> np.ndarray:
        # mean over the last tenth of the steps: the estimate SGD noise allows
        """The weights averaged over the last tenth of the steps (what SGD noise allows to
        estimate).
        """
        k = max(len(self.weights) // 10, 1)
        return self.weights[-k:].mean(axis=0)


@dataclass
class Result:
    """What ``dropout-regression`` (homework problem 5(a)-(h)) computes: the numbers it
    prints and plots.
    """

    ols: np.ndarray
    gd: Run
    masked_x: np.ndarray
    masked_y: np.ndarray
    dropout_ls: np.ndarray
    sgd_batch1: Run
    sgd_large: Run
    sweep_rates: np.ndarray
    sweep_closed: np.ndarray  # (len(rates), 2) minimizer of the expected loss
    sweep_gd: dict[float, np.ndarray]  # rate -> weights trained with large-batch SGD
    limit_0plus: np.ndarray
    adam_no_dropout: Run
    adam_dropout: Run
    sgd_no_dropout: Run


def expected_minimizer(rate: float) -> np.ndarray:
    """argmin_w E||y - (mask/(1-r) * x) w||^2; at r = 0 the minimum-norm solution."""
    x, y = X[0], Y[0, 0]
    if rate == 0:
        return np.linalg.pinv(X) @ Y[0]
    m = np.outer(x, x) + rate / (1 - rate) * np.diag(x * x)
    return np.linalg.solve(m, x * y)


def train(
    rate: float,
    batch: int,
    steps: int,
    optimizer: str = "sgd",
    lr: float | None = None,
    seed: int = 0,
    momentum: float = 0.0,
) -> Run:
    """Fit ``Sequential(Dropout(rate), Linear(2, 1, bias=False))`` from w = 0 on MSE.

    SGD's default step is 0.4 / max_i E[x~_i^2] = 0.4 (1 - rate) / x1^2: stable even for
    one masked example at a time. The expected loss is badly conditioned with dropout
    (curvatures 401 and 3 at rate 0.5), so the large-batch runs add momentum to reach
    the minimum in a few hundred steps.
    """
    manual_seed(seed)
    model = nn.Sequential(nn.Dropout(rate), nn.Linear(2, 1, bias=False))
    lin = model[1]
    lin.weight.data = np.zeros((1, 2))  # start at w = 0 (float64: we compare 4 decimals)
    if optimizer == "sgd":
        # step size from the curvature: the largest E[x~_i^2] is x1^2 / (1 - rate)
        lr = lr if lr is not None else 0.4 * (1 - rate) / float((X[0] ** 2).max())
        opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    else:
        opt = optim.Adam(model.parameters(), lr=lr if lr is not None else 0.01)
    xb = Tensor(np.repeat(X, batch, axis=0), dtype=np.float64)
    yb = Tensor(np.repeat(Y, batch, axis=0), dtype=np.float64)
    losses, weights = [], [lin.weight.data.ravel().copy()]
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        weights.append(lin.weight.data.ravel().copy())
    return Run(rate, batch, optimizer, np.asarray(losses), np.asarray(weights))


def run(
    seed: int = 0,
    steps_batch1: int = 2000,
    steps: int = 600,
    large_batch: int = 256,
    gd_sweep: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75),
) -> Result:
    """Run ``dropout-regression`` (problem 5(a)-(h)) with the given seed and options; returns
    its :class:`Result`.
    """
    ols = np.linalg.pinv(X) @ Y[0]
    gd = train(0.0, 1, steps, seed=seed)

    # (c) the four equally likely masked (and rescaled) copies of the one example
    masks = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=float)
    masked_x = masks * X / (1 - RATE)
    masked_y = np.repeat(Y, 4, axis=0)
    dropout_ls = np.linalg.lstsq(masked_x, masked_y, rcond=None)[0].ravel()

    sgd_batch1 = train(RATE, 1, steps_batch1, seed=seed)
    sgd_large = train(RATE, large_batch, steps, seed=seed, momentum=0.9)

    rates = np.round(np.linspace(0.0, 0.9, 19), 3)
    closed = np.array([expected_minimizer(r) for r in rates])
    sweep_gd = {r: train(r, large_batch, steps, seed=seed, momentum=0.9).final for r in gd_sweep}
    limit = expected_minimizer(1e-9)

    return Result(
        ols=ols,
        gd=gd,
        masked_x=masked_x,
        masked_y=masked_y,
        dropout_ls=dropout_ls,
        sgd_batch1=sgd_batch1,
        sgd_large=sgd_large,
        sweep_rates=rates,
        sweep_closed=closed,
        sweep_gd=sweep_gd,
        limit_0plus=limit,
        adam_no_dropout=train(0.0, 1, steps, optimizer="adam", seed=seed),
        adam_dropout=train(RATE, large_batch, 2 * steps, optimizer="adam", lr=0.02, seed=seed),
        sgd_no_dropout=gd,
    )


def _spikiness(losses: np.ndarray) -> float:
    """Mean |change| of the loss between consecutive steps over the second half."""
    tail = losses[len(losses) // 2 :]
    return float(np.abs(np.diff(tail)).mean())


def report(r: Result) -> str:
    """The text ``tapegrad experiment dropout-regression`` prints for a :class:`Result`."""
    d1, dl = r.sgd_batch1, r.sgd_large
    sweep_rows = []
    for rate, w in zip(r.sweep_rates, r.sweep_closed):
        gd = r.sweep_gd.get(float(rate))
        sweep_rows.append(
            [
                f"{rate:.2f}",
                fmt_vec(w),
                "" if gd is None else fmt_vec(gd),
                f"{10 * w[0]:.3f}",
                f"{w[1]:.3f}",
            ]
        )
    return "\n".join(
        [
            "x = [10, 1], y = 11, model y = w1 x1 + w2 x2",
            f"(a) OLS, minimum norm x^T (x x^T)^-1 y  = {fmt_vec(r.ols)}",
            f"(b) gradient descent from 0 ({len(r.gd.losses)} steps) = {fmt_vec(r.gd.weights[-1])}",
            "(c) dropout 0.5: least squares on the masked copies",
            "    x = "
            + str(r.masked_x.astype(int).tolist())
            + f", y = {r.masked_y.ravel().tolist()}",
            f"    w = {fmt_vec(r.dropout_ls)}",
            f"(d) SGD with dropout, batch 1: loss step-to-step change {_spikiness(d1.losses):.2f} "
            f"(spiky), w = {fmt_vec(d1.final)}",
            f"(e) SGD with dropout, batch {dl.batch}: loss step-to-step change "
            f"{_spikiness(dl.losses):.3f} (smooth), w = {fmt_vec(dl.final)}",
            f"(f) no dropout: 10 w1 = {10 * r.ols[0]:.3f}, w2 = {r.ols[1]:.3f} "
            f"(x1 term {10 * r.ols[0] / r.ols[1]:.0f}x larger); dropout: 10 w1 = "
            f"{10 * r.dropout_ls[0]:.3f}, w2 = {r.dropout_ls[1]:.3f}",
            "(g) sweep over the dropout rate (closed form: minimizer of the expected loss)",
            table(["rate", "w closed form", "w by SGD", "10 w1", "w2"], sweep_rows),
            f"    rate -> 0+: w -> {fmt_vec(r.limit_0plus)}, but at rate 0: {fmt_vec(r.ols)}",
            f"(h) no dropout: SGD w = {fmt_vec(r.sgd_no_dropout.weights[-1])}, "
            f"Adam w = {fmt_vec(r.adam_no_dropout.weights[-1])}",
            f"    dropout 0.5, batch {r.adam_dropout.batch}: Adam w = "
            f"{fmt_vec(r.adam_dropout.final)} (SGD {fmt_vec(dl.final)})",
        ]
    )


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``dropout-regression`` to the PNG file ``path``."""
    fig, ax = figure(2, 2, (11, 8))
    a = ax[0, 0]
    a.semilogy(r.sgd_batch1.losses + 1e-3, lw=0.6, label="batch 1")
    a.semilogy(r.sgd_large.losses + 1e-3, lw=1.5, label=f"batch {r.sgd_large.batch}")
    a.set(xlabel="step", ylabel="MSE (+1e-3)", title="(d)/(e) SGD with dropout 0.5")
    a.legend()
    a = ax[0, 1]
    a.plot(r.sweep_rates[1:], r.sweep_closed[1:, 0], "o-", color="C0", label="w1")
    a.plot(r.sweep_rates[1:], r.sweep_closed[1:, 1], "s-", color="C1", label="w2")
    a.plot([0], [r.ols[0]], "o", color="C0", mfc="none", ms=10)
    a.plot([0], [r.ols[1]], "s", color="C1", mfc="none", ms=10)
    for rate, w in r.sweep_gd.items():
        a.plot([rate, rate], w, "k+", ms=12)
    a.set(
        xlabel="dropout rate",
        ylabel="weight",
        title="(g) sweep: jump at rate 0 (open: rate 0, +: SGD)",
    )
    a.legend()
    a = ax[1, 0]
    t = np.linspace(-0.2, 1.3, 10)
    a.plot(t, 11 - 10 * t, "k:", lw=1, label="10 w1 + w2 = 11")
    for run, label in (
        (r.sgd_no_dropout, "SGD, no dropout"),
        (r.adam_no_dropout, "Adam, no dropout"),
        (r.sgd_large, "SGD, dropout"),
        (r.adam_dropout, "Adam, dropout"),
    ):
        (line,) = a.plot(run.weights[:, 0], run.weights[:, 1], lw=1, label=label)
        a.plot(*run.weights[-1], "o", color=line.get_color())
    a.set(
        xlabel="w1", ylabel="w2", xlim=(-0.1, 1.3), ylim=(-0.5, 11.5), title="(h) paths from w = 0"
    )
    a.legend(fontsize=8)
    a = ax[1, 1]
    labels = ["OLS", "dropout LS", "SGD drop b=1", "SGD drop large", "Adam no drop"]
    ws = [r.ols, r.dropout_ls, r.sgd_batch1.final, r.sgd_large.final, r.adam_no_dropout.weights[-1]]
    idx = np.arange(len(labels))
    a.bar(idx - 0.2, [10 * w[0] for w in ws], 0.4, label="10 w1 (x1's term)")
    a.bar(idx + 0.2, [w[1] for w in ws], 0.4, label="w2 (x2's term)")
    a.set_xticks(idx, labels, rotation=20, fontsize=8)
    a.set(title="(f) contribution of each input to the output")
    a.legend()
    save(fig, path)
