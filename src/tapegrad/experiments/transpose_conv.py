"""Problem 1(c): transpose convolution as a sum of shifted, scaled copies of the filter.

Input [[-1, 2], [3, 1]], filter [[1, -1], [0, 1]], stride 1, no padding: every input
entry scales a copy of the filter placed at its own position (times the stride), and the
overlaps add up to the 3x3 result [[-1, 3, -2], [3, -3, 1], [0, 3, 1]]. Both the result
and each of the four terms come from tapegrad's ``conv_transpose2d`` (a term is the
transpose convolution of the input with all but one entry zeroed).

The 1-D example of the problem statement is checked the same way: [a, b, c] with filter
[x, y, z] at stride 2 gives [ax, ay, az + bx, by, bz + cx, cy, cz]; which product lands
where is read off the op by probing it with unit inputs and unit filters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import figure, fmt_mat, save, t64

INPUT = [[-1.0, 2.0], [3.0, 1.0]]
FILTER = [[1.0, -1.0], [0.0, 1.0]]
EXPECTED = [[-1.0, 3.0, -2.0], [3.0, -3.0, 1.0], [0.0, 3.0, 1.0]]


@dataclass
class Result:
    """What ``transpose-conv`` (homework problem 1(c)) computes: the numbers it prints and plots."""

    output: np.ndarray  # (3, 3)
    terms: list[tuple[tuple[int, int], float, np.ndarray]]  # (position, input value, term)
    terms_sum: np.ndarray
    symbolic_1d: list[str]  # the stride-2 1-D example, entry by entry


def _ct2d(x: np.ndarray, w: np.ndarray, stride: int | tuple[int, int] = 1) -> np.ndarray:
    from ..nn import functional as F

    # conv_transpose2d weight layout is (C_in, C_out, kH, kW), as in PyTorch
    xt = t64(np.asarray(x)[None, None])
    wt = t64(np.asarray(w)[None, None])
    return F.conv_transpose2d(xt, wt, stride=stride).data[0, 0]


def run(seed: int = 0) -> Result:
    """Run ``transpose-conv`` (problem 1(c)) with the given seed and options; returns its
    :class:`Result`.
    """
    x, w = np.asarray(INPUT), np.asarray(FILTER)
    out = _ct2d(x, w)
    terms = []
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            only = np.zeros_like(x)
            only[r, c] = x[r, c]
            terms.append(((r, c), float(x[r, c]), _ct2d(only, w)))
    total = np.sum([t for _, _, t in terms], axis=0)

    # 1-D, stride 2, as a height-1 2-D transpose convolution; probe with unit vectors
    names_in, names_w = "abc", "xyz"
    parts: list[list[str]] = [[] for _ in range(7)]
    for i in range(3):
        for j in range(3):
            e_in, e_w = np.eye(3)[i][None], np.eye(3)[j][None]
            y = _ct2d(e_in, e_w, stride=(1, 2))[0]
            for k in np.flatnonzero(y):
                parts[k].append(f"{names_in[i]}{names_w[j]}")
    symbolic = [" + ".join(p) for p in parts]
    return Result(output=out, terms=terms, terms_sum=total, symbolic_1d=symbolic)


def report(r: Result) -> str:
    """The text ``tapegrad experiment transpose-conv`` prints for a :class:`Result`."""
    lines = [
        "input [[-1, 2], [3, 1]], filter [[1, -1], [0, 1]], stride 1, pad 0",
        "conv_transpose2d output:",
        fmt_mat(r.output),
        "as a sum of shifted, scaled filters:",
    ]
    for (rr, cc), v, term in r.terms:
        lines.append(f" {v:+.0f} x filter at ({rr}, {cc}):")
        lines.append(fmt_mat(term))
    lines += [
        "sum of the four terms:",
        fmt_mat(r.terms_sum),
        "1-D, [a, b, c] with filter [x, y, z], stride 2: [" + ", ".join(r.symbolic_1d) + "]",
    ]
    return "\n".join(lines)


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``transpose-conv`` to the PNG file ``path``."""
    fig, ax = figure(1, 5, (15, 3.4))
    panels = [(f"{v:+.0f} x filter at {pos}", t) for pos, v, t in r.terms]
    panels.append(("sum = conv_transpose2d", r.output))
    lim = max(np.abs(t).max() for _, t in panels)
    for a, (title, m) in zip(ax[0], panels):
        a.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
        for (i, j), v in np.ndenumerate(m):
            # white digits on the dark (large-magnitude) cells
            color = "white" if abs(v) > 0.6 * lim else "black"
            a.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=13, color=color)
        a.set_title(title)
        a.set_xticks([])
        a.set_yticks([])
    save(fig, path)
