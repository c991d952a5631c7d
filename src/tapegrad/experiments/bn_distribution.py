"""Problem 9: what batch norm does to a distribution.

(a) A 1-D Gaussian with mean 1.5 and variance 0.16 (std 0.4) through batch norm with
    gamma = 1, beta = 3 (training mode, a large batch): a Gaussian again, centred at
    beta = 3 with standard deviation gamma = 1.
(b) A correlated 2-D Gaussian through batch norm with gamma = 1, beta = 0: each feature is
    standardised on its own, so the mean moves to the origin and both axes get unit
    variance, but the correlation (the tilt of the ellipses) stays. The 1- and 2-sigma
    contours are ellipses before and after; the same fraction of points lies inside each
    (1 - e^(-1/2) = 39.3% and 1 - e^(-2) = 86.5%), since the map is affine.

The layer is ``nn.BatchNorm1d`` in training mode (batch statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import no_grad
from ..tensor import Tensor
from ._common import figure, fmt_vec, save, table

MEAN_1D, VAR_1D, GAMMA_1D, BETA_1D = 1.5, 0.16, 1.0, 3.0
MEAN_2D = np.array([2.0, -1.0])
COV_2D = np.array([[2.25, 0.9], [0.9, 0.64]])  # std 1.5 and 0.8, correlation 0.75


@dataclass
class Result:
    """What ``bn-distribution`` (homework problem 9) computes: the numbers it prints and plots."""

    x1: np.ndarray
    y1: np.ndarray
    stats_1d: dict[str, float]
    x2: np.ndarray
    y2: np.ndarray
    mean_before: np.ndarray
    mean_after: np.ndarray
    cov_before: np.ndarray
    cov_after: np.ndarray
    corr_before: float
    corr_after: float
    inside_before: tuple[float, float]  # fraction within the 1- and 2-sigma contours
    inside_after: tuple[float, float]


def _bn(x: np.ndarray, gamma: float, beta: float) -> np.ndarray:
    from .. import nn

    layer = nn.BatchNorm1d(x.shape[1])
    layer.weight.data[...] = gamma
    layer.bias.data[...] = beta
    layer.train()
    with no_grad():
        return layer(Tensor(x.astype(np.float32))).data.astype(np.float64)


def _inside(z: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> tuple[float, float]:
    d = z - mean
    m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)  # squared Mahalanobis distance
    return float((m2 <= 1).mean()), float((m2 <= 4).mean())


def run(seed: int = 0, n: int = 100_000) -> Result:
    """Run ``bn-distribution`` (problem 9) with the given seed and options; returns its
    :class:`Result`.
    """
    rng = np.random.default_rng(seed)
    x1 = rng.normal(MEAN_1D, np.sqrt(VAR_1D), (n, 1))
    y1 = _bn(x1, GAMMA_1D, BETA_1D)
    x2 = rng.multivariate_normal(MEAN_2D, COV_2D, n)
    y2 = _bn(x2, 1.0, 0.0)
    cb, ca = np.cov(x2.T, bias=True), np.cov(y2.T, bias=True)
    return Result(
        x1=x1.ravel(),
        y1=y1.ravel(),
        stats_1d={
            "mean_before": float(x1.mean()),
            "var_before": float(x1.var()),
            "mean_after": float(y1.mean()),
            "var_after": float(y1.var()),
        },
        x2=x2,
        y2=y2,
        mean_before=x2.mean(axis=0),
        mean_after=y2.mean(axis=0),
        cov_before=cb,
        cov_after=ca,
        corr_before=float(cb[0, 1] / np.sqrt(cb[0, 0] * cb[1, 1])),
        corr_after=float(ca[0, 1] / np.sqrt(ca[0, 0] * ca[1, 1])),
        inside_before=_inside(x2, x2.mean(axis=0), cb),
        inside_after=_inside(y2, y2.mean(axis=0), ca),
    )


def report(r: Result) -> str:
    """The text ``tapegrad experiment bn-distribution`` prints for a :class:`Result`."""
    s = r.stats_1d
    rows = [
        [
            "before",
            f"{s['mean_before']:.3f}",
            f"{s['var_before']:.3f}",
            f"{np.sqrt(s['var_before']):.3f}",
        ],
        [
            "after",
            f"{s['mean_after']:.3f}",
            f"{s['var_after']:.3f}",
            f"{np.sqrt(s['var_after']):.3f}",
        ],
    ]
    return "\n".join(
        [
            f"(a) N(1.5, 0.16), {len(r.x1)} samples, BatchNorm1d with gamma = {GAMMA_1D:g}, "
            f"beta = {BETA_1D:g}:",
            table(["", "mean", "variance", "std"], rows),
            "    after: a Gaussian centred at beta = 3 with standard deviation gamma = 1",
            "(b) 2-D Gaussian, BatchNorm1d(2) with gamma = 1, beta = 0:",
            f"    mean {fmt_vec(r.mean_before, 3)} -> {fmt_vec(r.mean_after, 3)}",
            f"    variances {fmt_vec(np.diag(r.cov_before), 3)} -> "
            f"{fmt_vec(np.diag(r.cov_after), 3)}",
            f"    correlation {r.corr_before:.3f} -> {r.corr_after:.3f} (kept: batch norm "
            "scales each feature on its own, it does not whiten)",
            f"    inside the 1- and 2-sigma contours: {r.inside_before[0]:.3f}, "
            f"{r.inside_before[1]:.3f} -> {r.inside_after[0]:.3f}, {r.inside_after[1]:.3f} "
            f"(Gaussian: {1 - np.exp(-0.5):.3f}, {1 - np.exp(-2):.3f})",
        ]
    )


def _ellipse(mean: np.ndarray, cov: np.ndarray, k: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 200)
    vals, vecs = np.linalg.eigh(cov)
    circle = np.stack([np.cos(t), np.sin(t)])
    return (mean[:, None] + k * vecs @ (np.sqrt(vals)[:, None] * circle)).T


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``bn-distribution`` to the PNG file ``path``."""
    fig, ax = figure(1, 2, (12, 4.6))
    a = ax[0, 0]
    a.hist(r.x1, bins=120, density=True, alpha=0.6, label="before: mean 1.5, var 0.16")
    a.hist(r.y1, bins=120, density=True, alpha=0.6, label="after: mean 3, var 1")
    a.axvline(BETA_1D, color="k", ls="--", lw=1)
    a.text(BETA_1D, a.get_ylim()[1] * 0.9, " beta", fontsize=11)
    a.set(xlabel="x", title="(a) batch norm, gamma = 1, beta = 3", xlim=(-0.5, 7))
    a.legend()
    a = ax[0, 1]
    idx = slice(0, 3000)
    a.scatter(*r.x2[idx].T, s=2, alpha=0.25, color="C0")
    a.scatter(*r.y2[idx].T, s=2, alpha=0.25, color="C1")
    for k, ls in ((1, "-"), (2, "--")):
        a.plot(
            *_ellipse(r.mean_before, r.cov_before, k).T, ls, color="C0", label=f"before, {k} sigma"
        )
        a.plot(*_ellipse(r.mean_after, r.cov_after, k).T, ls, color="C1", label=f"after, {k} sigma")
    a.plot(*r.mean_before, "x", color="C0", ms=10)
    a.plot(*r.mean_after, "x", color="C1", ms=10)
    a.set(xlabel="x1", ylabel="x2", title="(b) 2-D: centred, unit variances, same tilt")
    a.set_aspect("equal")
    a.legend(fontsize=8)
    save(fig, path)
