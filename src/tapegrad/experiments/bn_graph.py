"""Problem 6(a): the computational graph of training-time batch normalization.

Batch norm is written with tapegrad's primitive ops, naming the quantities of the
homework (``tensor.name``)::

    mu = X.mean(axis=0)            # per-feature batch mean
    sigma2 = X.var(axis=0)         # per-feature batch variance
    Z = (X - mu) / (sigma2 + eps).sqrt()
    Y = gamma * Z + beta

and ``tapegrad.viz.graph(Y)`` reads the graph off the recorded tape. Contracting the
unnamed intermediates gives the homework's edges X -> mu, X -> sigma^2, X -> Z, mu -> Z,
sigma^2 -> Z, Z -> Y, gamma -> Y, beta -> Y. (``X.var`` computes its own mean on the tape,
so no edge mu -> sigma^2 appears, as in the homework's graph.) The result is checked
against ``nn.functional.batch_norm`` when that is available.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..viz import Graph, GraphvizNotFoundError, graph
from ._common import figure, save, t64

EPS = 1e-5
HOMEWORK_EDGES = {
    ("X", "mu"),
    ("X", "sigma^2"),
    ("X", "Z"),
    ("mu", "Z"),
    ("sigma^2", "Z"),
    ("Z", "Y"),
    ("gamma", "Y"),
    ("beta", "Y"),
}


@dataclass
class Result:
    """What ``bn-graph`` (homework problem 6(a)) computes: the numbers it prints and plots."""

    tape: Graph  # every recorded op
    named: Graph  # contracted to the named tensors
    edges: set[tuple[str, str]]
    n_ops: int
    op_counts: dict[str, int]
    max_abs_diff_vs_functional: float | None  # vs F.batch_norm (None: not available)


def batch_norm_from_primitives(X, gamma, beta, eps: float = EPS):
    """Training-time batch norm over axis 0 of X (N, D), each step a named tensor."""
    mu = X.mean(axis=0)
    mu.name = "mu"
    sigma2 = X.var(axis=0)
    sigma2.name = "sigma^2"
    Z = (X - mu) / (sigma2 + eps).sqrt()
    Z.name = "Z"
    Y = gamma * Z + beta
    Y.name = "Y"
    return Y


def _functional_diff(X, gamma, beta, Y) -> float | None:
    try:
        from ..nn.functional import batch_norm
    except ImportError:
        return None
    ref = batch_norm(X, None, None, gamma, beta, training=True, eps=EPS)
    return float(np.abs(ref.data - Y.data).max())


def run(seed: int = 0, n: int = 8, d: int = 3) -> Result:
    """Run ``bn-graph`` (problem 6(a)) with the given seed and options; returns its
    :class:`Result`.
    """
    rng = np.random.default_rng(seed)
    X = t64(rng.normal(2.0, 3.0, (n, d)), requires_grad=True)
    gamma = t64(rng.uniform(0.5, 1.5, d), requires_grad=True)
    beta = t64(rng.normal(0.0, 1.0, d), requires_grad=True)
    X.name, gamma.name, beta.name = "X", "gamma", "beta"
    Y = batch_norm_from_primitives(X, gamma, beta)
    tape = graph(Y)
    counts: dict[str, int] = {}
    for op in tape.ops():
        counts[op.label] = counts.get(op.label, 0) + 1
    return Result(
        tape=tape,
        named=tape.contract(),
        edges=tape.named_edges(),
        n_ops=len(tape.ops()),
        op_counts=counts,
        max_abs_diff_vs_functional=_functional_diff(X, gamma, beta, Y),
    )


def report(r: Result) -> str:
    """The text ``tapegrad experiment bn-graph`` prints for a :class:`Result`."""
    order = ["X", "mu", "sigma^2", "gamma", "beta", "Z", "Y"]
    edges = sorted(r.edges, key=lambda e: (order.index(e[0]), order.index(e[1])))
    missing, extra = HOMEWORK_EDGES - r.edges, r.edges - HOMEWORK_EDGES
    lines = [
        f"recorded tape: {len(r.tape.tensors())} tensors, {r.n_ops} ops ("
        + ", ".join(f"{k} x{v}" for k, v in sorted(r.op_counts.items()))
        + ")",
        "edges between the named tensors:",
        *(f"  {a} -> {b}" for a, b in edges),
        "same as the homework's edges"
        if not missing and not extra
        else f"differs from the homework: missing {sorted(missing)}, extra {sorted(extra)}",
    ]
    if r.max_abs_diff_vs_functional is not None:
        lines.append(f"max |Y - F.batch_norm(X)| = {r.max_abs_diff_vs_functional:.1e} (float64)")
    return "\n".join(lines)


def plot(r: Result, path) -> None:
    """The named graph at ``path``; the full tape beside it at ``<stem>-tape<suffix>``.

    Uses Graphviz when installed; otherwise draws the named graph with matplotlib and
    writes the full tape as DOT text.
    """
    path = Path(path)
    tape_path = path.with_name(f"{path.stem}-tape{path.suffix}")
    try:
        r.named.render(path, title="training-time batch norm (homework 6(a))", rankdir="LR")
        r.tape.render(tape_path, title="batch norm: the recorded tape")
    except GraphvizNotFoundError as exc:
        _draw_layers(r.named, path)
        dot_path = tape_path.with_suffix(".dot")
        dot_path.write_text(r.tape.to_dot(title="batch norm: the recorded tape"))
        print(f"{exc}\n(drew {path} with matplotlib; full tape as DOT text in {dot_path})")


def _draw_layers(g: Graph, path: Path) -> None:
    """A left-to-right layered drawing of a small DAG with matplotlib."""
    preds: dict[str, list[str]] = {k: [] for k in g.nodes}
    for a, b in g.edges:
        preds[b].append(a)
    depth: dict[str, int] = {}

    def level(k: str) -> int:
        if k not in depth:
            depth[k] = 1 + max((level(p) for p in preds[k]), default=-1)
        return depth[k]

    columns: dict[int, list[str]] = {}
    for k in g.nodes:
        columns.setdefault(level(k), []).append(k)
    pos = {}
    for x, ks in columns.items():
        for i, k in enumerate(ks):
            pos[k] = (x, i - (len(ks) - 1) / 2)
    fig, ax = figure(1, 1, (8, 4))
    a = ax[0, 0]
    for s, t in g.edges:
        a.annotate(
            "",
            xy=pos[t],
            xytext=pos[s],
            arrowprops={"arrowstyle": "-|>", "shrinkA": 22, "shrinkB": 22, "color": "0.3"},
        )
    for k, (x, y) in pos.items():
        n = g.nodes[k]
        a.text(
            x,
            y,
            f"{n.label}\n{n.shape}",
            ha="center",
            va="center",
            bbox={"boxstyle": "round", "fc": "#cde4f7"},
        )
    a.set_xlim(-0.5, max(columns) + 0.5)
    a.set_ylim(-2, 2)
    a.axis("off")
    a.set_title("training-time batch norm (homework 6(a))")
    save(fig, path)
