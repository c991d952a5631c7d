"""Problems 4 and 8: dropout on the inputs of least squares is Tikhonov regularization.

Keeping each entry of X with probability p (R_ij ~ Bernoulli(p), no rescaling) gives the
expected loss

    E_R ||y - (R * X) w||^2 = ||y - p X w||^2 + p (1 - p) ||Gamma w||^2,
    Gamma = diag(X^T X)^(1/2)  (column norms of X).

Checked three ways: exactly, by enumerating every one of the 2^(n d) masks of a small X;
by Monte Carlo over masks drawn by ``F.dropout(X, 1 - p, scale=False)`` on a larger X;
and by training w with dropout (SGD, a fresh mask every step) and comparing with the
minimizer of the closed form. Rescaling
w = p * w_dropout turns the minimizer into that of the Tikhonov problem
||y - X w||^2 + ||Gamma' w||^2 with Gamma' = sqrt((1 - p) / p) Gamma.

Problem 8 multiplies by R_ij ~ N(mu, sigma^2) instead; the expected loss is
||y - (A) X w||^2 + (B) ||Gamma w||^2 and Monte Carlo picks (A) = mu, (B) = sigma^2 among
the homework's choices (the noise is drawn as mu * ``F.gaussian_dropout(X, sigma / mu)``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .. import manual_seed, optim
from ..nn import functional as F
from ._common import figure, fmt_vec, save, t64, table

P_KEEP = 0.7
MU, SIGMA = 0.8, 0.5


@dataclass
class Result:
    """What ``dropout-tikhonov`` (homework problem 4, 8) computes: the numbers it prints and
    plots.
    """

    p: float
    # exact enumeration on a small problem (n_small x d_small)
    small_shape: tuple[int, int]
    n_masks: int
    exact_expectation: float
    exact_closed_form: float
    # Monte Carlo on a larger problem, along w = t * w0
    ts: np.ndarray
    mc_dropout: np.ndarray
    mc_dropout_se: np.ndarray
    closed_dropout: np.ndarray
    mc_samples: int
    # minimizers
    w_dropout: np.ndarray  # argmin of the closed form (the dropout-trained weights)
    w_trained: np.ndarray  # w trained by SGD with dropout masks (averaged iterate)
    w_scaled: np.ndarray  # p * w_dropout
    w_tikhonov: np.ndarray  # argmin ||y - Xw||^2 + ||Gamma' w||^2
    # problem 8
    mu: float
    sigma: float
    mc_gauss: np.ndarray
    mc_gauss_se: np.ndarray
    closed_gauss: np.ndarray
    choice_errors: dict[tuple[str, str], float]  # (A, B) -> mean |MC - formula| / SE
    best_choice: tuple[str, str]
    # dense curves for the plot: t, closed forms, plain least squares, runner-up choice
    curves: dict[str, np.ndarray]
    runner_up: str


def _problem(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    # columns of very different scales, so Gamma is far from a multiple of the identity
    X = rng.standard_normal((n, d)) * np.geomspace(0.5, 3.0, d)
    y = X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n)
    return X, y


def expected_loss(X: np.ndarray, y: np.ndarray, w: np.ndarray, a: float, b: float) -> float:
    """||y - a X w||^2 + b ||Gamma w||^2 with Gamma = diag(X^T X)^(1/2)."""
    gamma2 = (X * X).sum(axis=0)
    return float(((y - a * X @ w) ** 2).sum() + b * (gamma2 * w * w).sum())


def _losses(P, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """||y - P_m w||^2 for each masked copy P_m of X in the tensor P (M, n, d)."""
    resid = t64(y) - (P * t64(w)).sum(axis=-1)
    return (resid * resid).sum(axis=-1).data


def _copies(X: np.ndarray, m: int):
    return t64(np.broadcast_to(X, (m, *X.shape)).copy())


def run(seed: int = 0, mc_samples: int = 20000, train_steps: int = 4000) -> Result:
    """Run ``dropout-tikhonov`` (problem 4, 8) with the given seed and options; returns its
    :class:`Result`.
    """
    rng = np.random.default_rng(seed)
    manual_seed(seed)  # the dropout masks come from tapegrad's dropout stream
    p = P_KEEP

    # 1) exact: all 2^12 masks of a 6x2 problem, weighted by their probabilities
    Xs, ys = _problem(rng, 6, 2)
    ws = rng.standard_normal(2)
    bits = np.array(list(itertools.product((0.0, 1.0), repeat=Xs.size))).reshape(-1, *Xs.shape)
    kept = bits.reshape(len(bits), -1).sum(axis=1)
    prob = p**kept * (1 - p) ** (Xs.size - kept)
    exact = float((prob * _losses(t64(bits) * t64(Xs), ys, ws)).sum())
    closed_small = expected_loss(Xs, ys, ws, p, p * (1 - p))

    # 2) Monte Carlo along a line w = t * w0 on a 40x4 problem
    X, y = _problem(rng, 40, 4)
    w0 = np.linalg.lstsq(X, y, rcond=None)[0]
    ts = np.linspace(-0.4, 1.6, 9)  # skips t = 0, where every mask gives the same loss
    mc, se, closed = [], [], []
    gmc, gse, gclosed = [], [], []
    for t in ts:
        w = t * w0
        # keep with probability p, no rescaling: dropout rate 1 - p with scale=False
        losses = _losses(F.dropout(_copies(X, mc_samples), p=1 - p, scale=False), y, w)
        mc.append(losses.mean())
        se.append(losses.std(ddof=1) / np.sqrt(mc_samples))
        closed.append(expected_loss(X, y, w, p, p * (1 - p)))
        # R ~ N(mu, sigma^2) = mu * N(1, (sigma/mu)^2): Gaussian dropout, scaled by mu
        G = MU * F.gaussian_dropout(_copies(X, mc_samples), sigma=SIGMA / MU)
        glosses = _losses(G, y, w)
        gmc.append(glosses.mean())
        gse.append(glosses.std(ddof=1) / np.sqrt(mc_samples))
        gclosed.append(expected_loss(X, y, w, MU, SIGMA**2))
    mc, se, closed = np.array(mc), np.array(se), np.array(closed)
    gmc, gse = np.array(gmc), np.array(gse)

    # which of the homework's (A), (B) choices matches the Monte Carlo estimates?
    a_choices = {
        "mu": MU,
        "2mu": 2 * MU,
        "mu/2": MU / 2,
        "sigma": SIGMA,
        "2sigma": 2 * SIGMA,
        "sigma/2": SIGMA / 2,
    }
    b_choices = {
        "mu^2": MU**2,
        "2mu^2": 2 * MU**2,
        "mu^2/2": MU**2 / 2,
        "sigma^2": SIGMA**2,
        "2sigma^2": 2 * SIGMA**2,
        "sigma^2/2": SIGMA**2 / 2,
    }
    errors = {}
    for (an, a), (bn, b) in itertools.product(a_choices.items(), b_choices.items()):
        pred = np.array([expected_loss(X, y, t * w0, a, b) for t in ts])
        errors[(an, bn)] = float(np.mean(np.abs(gmc - pred) / gse))
    best = min(errors, key=errors.get)
    runner_up = sorted(errors, key=errors.get)[1]
    fine = np.linspace(ts[0], ts[-1], 101)
    curves = {
        "t": fine,
        "dropout": np.array([expected_loss(X, y, t * w0, p, p * (1 - p)) for t in fine]),
        "gauss": np.array([expected_loss(X, y, t * w0, MU, SIGMA**2) for t in fine]),
        "plain": np.array([expected_loss(X, y, t * w0, 1.0, 0.0) for t in fine]),
        "runner_up": np.array(
            [
                expected_loss(X, y, t * w0, a_choices[runner_up[0]], b_choices[runner_up[1]])
                for t in fine
            ]
        ),
    }
    curves_label = f"(A) = {runner_up[0]}, (B) = {runner_up[1]}"

    # 3) minimizers: dropout objective, its rescaling, the Tikhonov problem
    gamma2 = (X * X).sum(axis=0)
    w_drop = np.linalg.solve(p * p * X.T @ X + p * (1 - p) * np.diag(gamma2), p * X.T @ y)
    gamma_t2 = (1 - p) / p * gamma2
    w_tik = np.linalg.solve(X.T @ X + np.diag(gamma_t2), X.T @ y)

    # 4) learn w with dropout: SGD on ||y - (R * X) w||^2 with a fresh mask each step
    w = t64(np.zeros(X.shape[1]), requires_grad=True)
    opt = optim.SGD([w], lr=0.2 / float(gamma2.max()))
    Xt, yt = t64(X), t64(y)
    avg, count = np.zeros_like(w.data), 0
    for step in range(train_steps):
        resid = yt - (F.dropout(Xt, p=1 - p, scale=False) * w).sum(axis=-1)
        opt.zero_grad()
        (resid * resid).sum().backward()
        opt.step()
        if step >= train_steps // 2:  # average the second half: SGD noise averages out
            avg += w.data
            count += 1
    return Result(
        p=p,
        small_shape=Xs.shape,
        n_masks=len(bits),
        exact_expectation=exact,
        exact_closed_form=closed_small,
        ts=ts,
        mc_dropout=mc,
        mc_dropout_se=se,
        closed_dropout=closed,
        mc_samples=mc_samples,
        w_dropout=w_drop,
        w_trained=avg / count,
        w_scaled=p * w_drop,
        w_tikhonov=w_tik,
        mu=MU,
        sigma=SIGMA,
        mc_gauss=gmc,
        mc_gauss_se=gse,
        closed_gauss=np.array(gclosed),
        choice_errors=errors,
        best_choice=best,
        curves=curves,
        runner_up=curves_label,
    )


def report(r: Result) -> str:
    """The text ``tapegrad experiment dropout-tikhonov`` prints for a :class:`Result`."""
    rows = [
        [f"{t:+.2f}", f"{m:.3f} +- {s:.3f}", f"{c:.3f}", f"{(m - c) / s:+.2f}"]
        for t, m, s, c in zip(r.ts, r.mc_dropout, r.mc_dropout_se, r.closed_dropout)
    ]
    grows = [
        [f"{t:+.2f}", f"{m:.3f} +- {s:.3f}", f"{c:.3f}", f"{(m - c) / s:+.2f}"]
        for t, m, s, c in zip(r.ts, r.mc_gauss, r.mc_gauss_se, r.closed_gauss)
    ]
    ranked = sorted(r.choice_errors.items(), key=lambda kv: kv[1])[:3]
    return "\n".join(
        [
            f"keep probability p = {r.p}; Gamma = diag(X^T X)^(1/2)",
            f"exact, all {r.n_masks} masks of a {r.small_shape[0]}x{r.small_shape[1]} X: "
            f"E||y - (R*X)w||^2 = {r.exact_expectation:.10f}, "
            f"||y - pXw||^2 + p(1-p)||Gamma w||^2 = {r.exact_closed_form:.10f}",
            f"Monte Carlo ({r.mc_samples} masks per point) on a 40x4 X along w = t * w_ols:",
            table(["t", "E[loss] (MC)", "closed form", "z"], rows),
            f"argmin of the dropout objective w~   = {fmt_vec(r.w_dropout)}",
            f"w~ learned by SGD with dropout masks = {fmt_vec(r.w_trained)}",
            f"p * w~                               = {fmt_vec(r.w_scaled)}",
            f"Tikhonov argmin, Gamma' = sqrt((1-p)/p) Gamma = {fmt_vec(r.w_tikhonov)}",
            f"problem 8: R_ij ~ N(mu={r.mu}, sigma^2={r.sigma**2}):",
            table(["t", "E[loss] (MC)", "mu, sigma^2 form", "z"], grows),
            "closest choices for ((A), (B)) (mean |z| over the line): "
            + ", ".join(f"({a}, {b}): {e:.2f}" for (a, b), e in ranked),
            f"answer: (A) = {r.best_choice[0]}, (B) = {r.best_choice[1]}",
        ]
    )


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``dropout-tikhonov`` to the PNG file ``path``."""
    fig, ax = figure(1, 2, (11, 4))
    c = r.curves
    panels = (
        (
            ax[0, 0],
            r.mc_dropout,
            r.mc_dropout_se,
            c["dropout"],
            f"Bernoulli dropout, p = {r.p}",
            "||y - pXw||^2 + p(1-p)||Gamma w||^2",
        ),
        (
            ax[0, 1],
            r.mc_gauss,
            r.mc_gauss_se,
            c["gauss"],
            f"Gaussian noise, mu = {r.mu}, sigma^2 = {r.sigma**2:g}",
            "||y - mu Xw||^2 + sigma^2 ||Gamma w||^2",
        ),
    )
    for a, mc, se, closed, title, formula in panels:
        a.plot(c["t"], closed, "-", color="C1", label=formula)
        a.plot(c["t"], c["plain"], ":", color="0.4", label="||y - Xw||^2 (no noise)")
        a.errorbar(r.ts, mc, yerr=2 * se, fmt="o", color="C0", label="Monte Carlo (+-2 SE)")
        a.set(xlabel="t  (w = t * w_ols)", ylabel="expected loss", title=title)
    ax[0, 1].plot(c["t"], c["runner_up"], "--", color="C3", lw=1, label=r.runner_up)
    for a in ax[0]:
        a.legend(fontsize=8)
    save(fig, path)
