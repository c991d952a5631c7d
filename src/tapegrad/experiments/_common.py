"""Shared by the experiments: figures without pyplot, tables, float64 tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..tensor import Tensor


def figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.0, 4.0)) -> Any:
    """A matplotlib Figure and its axes array (always 2-D), drawn off-screen.

    ``matplotlib.figure.Figure`` renders with the Agg canvas by itself, so drawing to a
    file neither needs a display nor changes the user's pyplot backend.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "matplotlib (install it with `pip install matplotlib` or `pip install tapegrad[plot]`)"
        ) from exc
    fig = Figure(figsize=size, layout="constrained")
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def save(fig: Any, path: str | Path) -> None:
    """Write ``fig`` to ``path`` as a PNG (110 dpi)."""
    fig.savefig(str(path), dpi=110)


def t64(a: Any, requires_grad: bool = False) -> Tensor:
    """A float64 tensor (the experiments compare with printed decimals)."""
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def fmt_vec(v: Any, digits: int = 4) -> str:
    """``[1.0891, 0.1089]``: a vector as the homework prints it."""
    arr = np.asarray(v, dtype=float).ravel()
    # round first so a tiny negative number prints as 0.0000, not -0.0000
    return "[" + ", ".join(f"{round(x, digits) + 0.0:.{digits}f}" for x in arr) + "]"


def fmt_mat(m: Any, digits: int = 0, width: int = 4) -> str:
    """A matrix as the homework prints it: one bracketed row per line."""
    arr = np.asarray(m, dtype=float)
    return "\n".join("  [" + " ".join(f"{x:{width}.{digits}f}" for x in row) + "]" for row in arr)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    # first column (a label) left-aligned, the numbers right-aligned
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def classification_epoch(
    model: Any, opt: Any, x: np.ndarray, y: np.ndarray, batch: int, rng: np.random.Generator
) -> list[float]:
    """One epoch of minibatches in a random order (``rng.permutation``), cross-entropy,
    one optimiser step each, the model in training mode; returns the batch losses."""
    from ..nn import functional as F

    model.train()
    order = rng.permutation(len(y))
    losses = []
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        opt.zero_grad()
        loss = F.cross_entropy(model(Tensor(x[idx])), y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
