"""The recorded tape drawn as a computational graph.

``graph(y)`` walks the tape backwards from ``y`` and returns a :class:`Graph` whose nodes
are the tensors and the ops that made them, with edges in the direction the data flows
(input tensor -> op -> output tensor)::

    import tapegrad as tg
    from tapegrad.viz import graph

    x = tg.randn(4, 3, requires_grad=True); x.name = "X"
    mu = x.mean(axis=0); mu.name = "mu"
    z = x - mu; z.name = "Z"
    g = graph(z.sum())
    print(g.to_dot())          # Graphviz DOT text, no dependency
    g.render("graph.svg")      # needs Graphviz's `dot` program
    g.named_edges()            # {("X", "mu"), ("X", "Z"), ("mu", "Z")}

Only what the tape records appears: tensors that do not require grad (constants such as
``eps``) are not recorded as inputs and so are not drawn. Tensors are labelled with
``tensor.name`` when set (or a name passed in ``names=``), otherwise by their role
(``leaf`` / ``output``); every tensor label carries its shape and dtype. Draw the graph
before ``backward()``: backward frees the records it has used (unless
``retain_graph=True``), and ``graph`` then raises rather than draw a truncated tape.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .tensor import Tensor

__all__ = ["Graph", "GraphNode", "GraphvizNotFoundError", "graph"]


class GraphvizNotFoundError(RuntimeError):
    """``Graph.render`` needs Graphviz's ``dot`` program and it is not on PATH."""


@dataclass
class GraphNode:
    """One node: a tensor (``kind="tensor"``) or an op record (``kind="op"``).

    ``shape`` is the tensor's shape, or for an op the shape of the tensor it produced.
    ``name`` is the user's name for a tensor (``tensor.name``), else None.
    ``leaf`` is True for tensors not made by a recorded op (inputs and parameters).
    """

    id: str
    kind: str
    label: str
    shape: tuple[int, ...]
    dtype: str = ""
    name: str | None = None
    leaf: bool = False


@dataclass
class Graph:
    """Nodes by id and edges ``(src_id, dst_id)`` in data-flow order (inputs first)."""

    nodes: dict[str, GraphNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    output: str | None = None

    # --- queries ---------------------------------------------------------------------------
    def tensors(self) -> list[GraphNode]:
        """The tensor nodes, in data-flow order."""
        return [n for n in self.nodes.values() if n.kind == "tensor"]

    def ops(self) -> list[GraphNode]:
        """The op nodes, in data-flow order."""
        return [n for n in self.nodes.values() if n.kind == "op"]

    def node(self, name: str) -> GraphNode:
        """The tensor node called ``name`` (KeyError listing the names there are)."""
        for n in self.nodes.values():
            if n.kind == "tensor" and n.name == name:
                return n
        have = sorted(n.name for n in self.nodes.values() if n.name)
        raise KeyError(f"Graph.node: no tensor named {name!r}; named tensors: {have}")

    def _succ(self) -> dict[str, list[str]]:
        succ: dict[str, list[str]] = {k: [] for k in self.nodes}
        for a, b in self.edges:
            succ[a].append(b)
        return succ

    def named_edges(self) -> set[tuple[str, str]]:
        """Edges between named tensors, with unnamed tensors and ops contracted away.

        ``(a, b)`` is included when data flows from the tensor named ``a`` to the tensor
        named ``b`` along a path that passes through no other named tensor. This is the
        graph as a person draws it (``X -> mu -> Z``) when the tape holds the primitive
        ops in between.
        """
        succ = self._succ()
        out: set[tuple[str, str]] = set()
        for start in self.nodes.values():
            if start.kind != "tensor" or not start.name:
                continue
            stack, seen = list(succ[start.id]), set()
            while stack:
                k = stack.pop()
                if k in seen:
                    continue
                seen.add(k)
                n = self.nodes[k]
                if n.kind == "tensor" and n.name:
                    out.add((start.name, n.name))
                else:
                    stack.extend(succ[k])
        return out

    def contract(self) -> Graph:
        """A graph of the named tensors only, joined as in :meth:`named_edges`."""
        g = Graph()
        ids = {n.name: n.id for n in self.nodes.values() if n.kind == "tensor" and n.name}
        for n in self.nodes.values():
            if n.kind == "tensor" and n.name:
                g.nodes[n.id] = n
        g.edges = sorted((ids[a], ids[b]) for a, b in self.named_edges())
        g.output = self.output if self.output in g.nodes else None
        return g

    # --- output ----------------------------------------------------------------------------
    def to_dot(self, title: str | None = None, rankdir: str = "TB") -> str:
        """Graphviz DOT text: tensors as boxes (named ones filled), ops as ellipses."""
        lines = ["digraph tape {", f"  rankdir={rankdir};"]
        if title:
            lines.append(f'  label="{_esc(title)}"; labelloc=t; fontsize=16; fontname="Helvetica";')
        lines.append('  node [fontname="Helvetica", fontsize=11];')
        lines.append('  edge [color="#444444"];')
        for n in self.nodes.values():
            if n.kind == "op":
                attrs = 'shape=ellipse, style=filled, fillcolor="#fdf0d5"'
                text = f"{n.label}\\n{_shape(n.shape)}"
            else:
                fill = "#cde4f7" if n.name else ("#e8f5e9" if n.leaf else "#ffffff")
                attrs = f'shape=box, style="rounded,filled", fillcolor="{fill}"'
                if n.id == self.output:
                    attrs += ", penwidth=2"
                meta = f"{_shape(n.shape)} {n.dtype}".rstrip()
                if n.label:
                    text = f"{_esc(n.label)}\\n{meta}"
                else:  # an unnamed intermediate: just its shape, drawn small
                    text, attrs = meta, attrs + ", fontsize=9, height=0.3"

            lines.append(f'  "{n.id}" [label="{text}", {attrs}];')
        for a, b in self.edges:
            lines.append(f'  "{a}" -> "{b}";')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def render(self, path: str | Path, title: str | None = None, rankdir: str = "TB") -> Path:
        """Write the graph as an image with Graphviz's ``dot``; format from the suffix.

        ``path`` ends in ``.svg``, ``.png`` or ``.pdf`` (``.dot`` writes the DOT text and
        needs nothing). Raises :class:`GraphvizNotFoundError` when ``dot`` is not installed.
        """
        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        text = self.to_dot(title=title, rankdir=rankdir)
        if fmt in ("dot", "gv"):
            path.write_text(text)
            return path
        if fmt not in ("svg", "png", "pdf"):
            raise ValueError(
                f"Graph.render: path must end in .svg, .png, .pdf or .dot, got {str(path)!r}"
            )
        exe = shutil.which("dot")
        if exe is None:
            raise GraphvizNotFoundError(
                "Graph.render: Graphviz's `dot` program was not found on PATH, so "
                f"{str(path)!r} cannot be drawn. Install Graphviz (Debian/Ubuntu: "
                "`apt-get install graphviz`; macOS: `brew install graphviz`; conda: "
                "`conda install -c conda-forge graphviz`), or save Graph.to_dot() text to a "
                ".dot file and render it elsewhere."
            )
        proc = subprocess.run(
            [exe, f"-T{fmt}", "-o", str(path)], input=text.encode(), capture_output=True
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"Graph.render: `dot -T{fmt}` failed with exit code {proc.returncode}: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return path

    def _repr_svg_(self) -> str | None:  # pragma: no cover - notebooks only
        exe = shutil.which("dot")
        if exe is None:
            return None
        proc = subprocess.run([exe, "-Tsvg"], input=self.to_dot().encode(), capture_output=True)
        return proc.stdout.decode() if proc.returncode == 0 else None

    def __repr__(self) -> str:
        return (
            f"Graph({len(self.tensors())} tensors, {len(self.ops())} ops, {len(self.edges)} edges)"
        )


def graph(tensor: Tensor, names: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] = ()) -> Graph:
    """The tape that produced ``tensor``, as a :class:`Graph`.

    ``tensor`` must have been computed with grad recording on (some input requires grad).
    ``names`` optionally labels tensors without setting ``tensor.name``, e.g.
    ``graph(loss, names=model.named_parameters())`` or ``{"gamma": bn.weight}``;
    an explicit ``tensor.name`` wins.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"graph: tensor must be a Tensor, got {type(tensor).__name__}")
    items = names.items() if isinstance(names, Mapping) else names
    given = {id(t): str(k) for k, t in items}
    g = Graph()

    # Short, run-independent ids (t0, t1, op0 ...) so the DOT text of one program is stable.
    tkeys: dict[int, str] = {}
    okeys: dict[int, str] = {}

    def tensor_id(t: Tensor) -> str:
        key = tkeys.get(id(t))
        if key is None:
            key = tkeys[id(t)] = f"t{len(tkeys)}"
            name = t.name or given.get(id(t))
            leaf = t._node is None
            if name:
                label = name
            elif t is tensor:
                label = "output"
            else:
                label = "leaf" if leaf else ""
            g.nodes[key] = GraphNode(
                key, "tensor", label, tuple(t.shape), str(t.dtype), name=name, leaf=leaf
            )
        return key

    # Iterative walk: a long tape (an unrolled training loop) must not hit the recursion limit.
    g.output = tensor_id(tensor)
    stack: list[Tensor] = [tensor]
    seen_edges: set[tuple[str, str]] = set()
    while stack:
        t = stack.pop()
        node = t._node
        if node is None:
            continue
        if getattr(node, "freed", False):
            # backward() drops a spent record's inputs: the graph would be cut short
            raise ValueError(
                f"graph: the tape behind this tensor (op {node.fn.__name__}) was freed by "
                "backward(); call graph() before backward(), or pass retain_graph=True"
            )
        op_key = okeys.get(id(node))
        if op_key is None:
            op_key = okeys[id(node)] = f"op{len(okeys)}"
            g.nodes[op_key] = GraphNode(op_key, "op", node.fn.__name__, tuple(t.shape))
            for inp in node.inputs:
                if inp is None:
                    continue
                edge = (tensor_id(inp), op_key)
                if edge not in seen_edges:  # x * x records x twice; draw one edge
                    seen_edges.add(edge)
                    g.edges.append(edge)
                stack.append(inp)
        edge = (op_key, tensor_id(t))
        if edge not in seen_edges:
            seen_edges.add(edge)
            g.edges.append(edge)
    # Inputs first, output last: the order the tape was recorded in reads top-down.
    g.edges.reverse()
    return g


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')
