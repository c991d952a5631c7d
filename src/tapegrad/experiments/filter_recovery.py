"""Problem 1(b): which length-3 filter maps [1, 4, 0, -2, 3] to [-2, 2, 11]?

Convolution (cross-correlation, as in neural networks: the filter is not flipped) is
linear in the filter, so the three outputs are three equations in h1, h2, h3. The
matrix of that system is read off tapegrad's own ``conv1d``: column j is the output for
the unit filter e_j. Solving gives [2, -1, 3]. The same filter is then learned by
gradient descent: a ``nn.Conv1d(1, 1, 3, bias=False)`` from a random start, trained on
the mean squared error of its output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import manual_seed, nn, optim
from ..nn import functional as F
from ..tensor import Tensor
from ._common import figure, fmt_mat, fmt_vec, save, t64

SIGNAL = [1.0, 4.0, 0.0, -2.0, 3.0]
OUTPUT = [-2.0, 2.0, 11.0]
SEED_FILTER = [2.0, -1.0, 3.0]


@dataclass
class Result:
    """What ``filter-recovery`` (homework problem 1(b)) computes: the numbers it prints and
    plots.
    """

    system: np.ndarray  # (3, 3): row i holds the signal values that meet the filter at output i
    solved: np.ndarray  # (3,) the filter from the linear system
    initial: np.ndarray  # (3,) the Conv1d's random starting filter
    trained: np.ndarray  # (3,) the Conv1d's filter after gradient descent
    trained_output: np.ndarray  # (3,) conv1d(signal, trained filter)
    losses: list[float] = field(default_factory=list)
    path: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # filter per step


def run(seed: int = 0, steps: int = 120, lr: float = 0.05) -> Result:
    """Run ``filter-recovery`` (problem 1(b)) with the given seed and options; returns its
    :class:`Result`.
    """
    x = t64(SIGNAL).reshape(1, 1, 5)
    # Column j of the system matrix = conv1d(x, e_j): convolution is linear in the filter.
    cols = [F.conv1d(x, t64(np.eye(3)[j]).reshape(1, 1, 3)).data.ravel() for j in range(3)]
    system = np.stack(cols, axis=1)
    solved = np.linalg.solve(system, np.asarray(OUTPUT))

    manual_seed(seed)
    conv = nn.Conv1d(1, 1, 3, bias=False)
    initial = conv.weight.data.ravel().astype(np.float64).copy()
    opt = optim.SGD(conv.parameters(), lr=lr)
    xs = Tensor(np.asarray(SIGNAL, dtype=np.float32).reshape(1, 1, 5))
    ys = Tensor(np.asarray(OUTPUT, dtype=np.float32).reshape(1, 1, 3))
    losses, path = [], [initial]
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(conv(xs), ys)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        path.append(conv.weight.data.ravel().astype(np.float64).copy())
    trained = conv.weight.data.ravel().astype(np.float64)
    return Result(
        system=system,
        solved=solved,
        initial=initial,
        trained=trained,
        trained_output=conv(xs).data.ravel().astype(np.float64),
        losses=losses,
        path=np.asarray(path),
    )


def report(r: Result) -> str:
    """The text ``tapegrad experiment filter-recovery`` prints for a :class:`Result`."""
    rows = [
        ("filter by solving the system:", fmt_vec(r.solved)),
        ("Conv1d random start:", fmt_vec(r.initial)),
        (
            f"Conv1d after {len(r.losses)} SGD steps:",
            f"{fmt_vec(r.trained)}  (final MSE {r.losses[-1]:.2e})",
        ),
        ("its output on the signal:", fmt_vec(r.trained_output)),
        ("homework answer:", fmt_vec(SEED_FILTER, 0)),
    ]
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(
        [
            f"signal {fmt_vec(SIGNAL, 0)} -> output {fmt_vec(OUTPUT, 0)} (no padding, stride 1)",
            "linear system (row i: the signal values the filter meets at output i):",
            fmt_mat(r.system),
            *(f"{k:<{width}} {v}" for k, v in rows),
        ]
    )


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``filter-recovery`` to the PNG file ``path``."""
    fig, ax = figure(1, 2, (10, 3.8))
    ax[0, 0].semilogy(np.maximum(r.losses, 1e-16))
    ax[0, 0].set(xlabel="SGD step", ylabel="MSE", title="Conv1d training loss")
    for j, c in enumerate(("C0", "C1", "C2")):
        ax[0, 1].plot(r.path[:, j], color=c, label=f"h{j + 1}")
        ax[0, 1].axhline(r.solved[j], color=c, ls="--", lw=0.8)
    ax[0, 1].set(
        xlabel="SGD step",
        ylabel="filter value",
        title="filter -> [2, -1, 3] (dashed: solved system)",
    )
    ax[0, 1].legend()
    save(fig, path)
