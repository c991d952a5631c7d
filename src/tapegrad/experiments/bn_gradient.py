"""Problem 2(b): the gradient through a batch norm that only subtracts the mean.

y_i = gamma * (x_i - mean(x)) + beta, so dL/dx_i = gamma * (dL/dy_i - mean_j dL/dy_j).
For a batch of one the output no longer depends on the input (y_1 = beta): the gradient
is exactly 0. As the batch grows each sample's gradient is coupled to the others only
through -gamma/n, so dL/dx_i tends to gamma * dL/dy_i.

The layer is built from tapegrad's primitive ops; the gradients come from the tape. The
downstream loss is L = sum_j g_j * y_j with g_1 = 1 for the sample we follow and the other
g_j drawn with mean 0, so dL/dy_j = g_j and the limit is gamma * g_1 = gamma.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import figure, save, t64, table

GAMMA, BETA = 2.0, 0.5
SIZES = (1, 2, 4, 8, 16, 64, 256, 1024, 4096)


@dataclass
class Result:
    """What ``bn-gradient`` (homework problem 2(b)) computes: the numbers it prints and plots."""

    gamma: float
    sizes: list[int]
    grad_x1: list[float]  # dL/dx_1 from the tape
    limit: list[float]  # gamma * dL/dy_1
    formula: list[float]  # gamma * (dL/dy_1 - mean_j dL/dy_j)
    jac_diag: list[float]  # dy_1/dx_1 from the tape
    jac_off: list[float]  # dy_2/dx_1 from the tape (nan for n = 1)


def mean_only_bn(x, gamma, beta):
    """y = gamma * (x - mean(x)) + beta over a batch x of shape (n,)."""
    return gamma * (x - x.mean()) + beta


def run(seed: int = 0, sizes: tuple[int, ...] = SIZES) -> Result:
    """Run ``bn-gradient`` (problem 2(b)) with the given seed and options; returns its
    :class:`Result`.
    """
    rng = np.random.default_rng(seed)
    out = Result(GAMMA, list(sizes), [], [], [], [], [])
    for n in sizes:
        x = t64(rng.normal(1.0, 2.0, n), requires_grad=True)
        gamma, beta = t64(GAMMA, requires_grad=True), t64(BETA, requires_grad=True)
        g = rng.standard_normal(n)
        g[0] = 1.0  # the followed sample's upstream gradient; the rest average to 0
        y = mean_only_bn(x, gamma, beta)
        (y * t64(g)).sum().backward()
        out.grad_x1.append(float(x.grad.data[0]))
        out.limit.append(GAMMA * g[0])
        out.formula.append(GAMMA * (g[0] - g.mean()))
        # one row of the Jacobian: backward from y_1 alone (and y_2 alone)
        x2 = t64(x.data, requires_grad=True)
        y2 = mean_only_bn(x2, t64(GAMMA), t64(BETA))
        y2[0].backward()
        out.jac_diag.append(float(x2.grad.data[0]))
        if n > 1:
            x3 = t64(x.data, requires_grad=True)
            mean_only_bn(x3, t64(GAMMA), t64(BETA))[1].backward()
            out.jac_off.append(float(x3.grad.data[0]))
        else:
            out.jac_off.append(float("nan"))
    return out


def report(r: Result) -> str:
    """The text ``tapegrad experiment bn-gradient`` prints for a :class:`Result`."""
    rows = []
    for i, n in enumerate(r.sizes):
        off = "-" if np.isnan(r.jac_off[i]) else f"{r.jac_off[i]:+.6f}"
        rows.append(
            [
                n,
                f"{r.grad_x1[i]:+.6f}",
                f"{r.formula[i]:+.6f}",
                f"{r.limit[i]:+.6f}",
                f"{r.jac_diag[i]:+.6f}",
                off,
            ]
        )
    return "\n".join(
        [
            f"y_i = gamma * (x_i - mean(x)) + beta, gamma = {r.gamma}; "
            "L = sum_j g_j y_j with g_1 = 1, other g_j ~ N(0, 1)",
            table(
                [
                    "n",
                    "dL/dx_1 (tape)",
                    "gamma(g_1 - mean g)",
                    "gamma dL/dy_1",
                    "dy_1/dx_1",
                    "dy_2/dx_1",
                ],
                rows,
            ),
            "n = 1: dL/dx_1 = 0 exactly (y_1 = beta whatever x_1 is); as n grows "
            "dy_1/dx_1 = gamma(1 - 1/n) -> gamma, dy_j/dx_1 = -gamma/n -> 0, so "
            "dL/dx_1 -> gamma dL/dy_1",
        ]
    )


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``bn-gradient`` to the PNG file ``path``."""
    fig, ax = figure(1, 2, (10, 3.8))
    n = np.asarray(r.sizes)
    ax[0, 0].semilogx(n, r.grad_x1, "o-", label="dL/dx_1 (tape)")
    ax[0, 0].semilogx(n, r.formula, "x", ms=9, label="gamma (g_1 - mean g)")
    ax[0, 0].axhline(r.gamma, color="k", ls="--", lw=0.8, label="gamma dL/dy_1")
    ax[0, 0].set(xlabel="batch size n", ylabel="dL/dx_1", title="mean-only batch norm gradient")
    ax[0, 0].legend()
    ax[0, 1].semilogx(n, r.jac_diag, "o-", label="dy_1/dx_1 = gamma(1 - 1/n)")
    ax[0, 1].semilogx(n[1:], r.jac_off[1:], "s-", label="dy_2/dx_1 = -gamma/n")
    ax[0, 1].axhline(r.gamma, color="k", ls="--", lw=0.8)
    ax[0, 1].axhline(0, color="k", lw=0.5)
    ax[0, 1].set(xlabel="batch size n", title="Jacobian entries from the tape")
    ax[0, 1].legend()
    save(fig, path)
