"""tapegrad.viz: the recorded tape as a graph (nodes, shapes, data-flow edges, DOT, render)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import viz
from tapegrad.viz import GraphvizNotFoundError, graph


def _t(shape, name=None, requires_grad=True):
    t = tg.Tensor(np.random.default_rng(0).standard_normal(shape), requires_grad=requires_grad)
    t.name = name
    return t


def test_nodes_are_tensors_and_ops_with_shapes_and_edges_follow_data():
    a, b = _t((2, 3), "a"), _t((3, 4), "b")
    y = a @ b
    s = y.sum()
    g = graph(s)
    ops = sorted(n.label for n in g.ops())
    assert ops == ["MatMul", "Sum"]
    shapes = {n.label: n.shape for n in g.ops()}
    assert shapes == {"MatMul": (2, 4), "Sum": ()}
    by_name = {n.name: n for n in g.tensors() if n.name}
    assert by_name["a"].shape == (2, 3) and by_name["b"].shape == (3, 4)
    assert by_name["a"].leaf and by_name["b"].leaf
    # a -> MatMul -> (2, 4) tensor -> Sum -> output
    succ = {}
    for u, v in g.edges:
        succ.setdefault(u, []).append(v)
    (mm,) = succ[by_name["a"].id]
    assert g.nodes[mm].label == "MatMul" and succ[by_name["b"].id] == [mm]
    (mid,) = succ[mm]
    assert g.nodes[mid].kind == "tensor" and g.nodes[mid].shape == (2, 4)
    (sm,) = succ[mid]
    assert g.nodes[sm].label == "Sum" and succ[sm] == [g.output]
    assert g.nodes[g.output].label == "output"
    assert len(g.edges) == 5


def test_shared_input_and_repeated_use_give_one_node_and_one_edge():
    x = _t((3,), "x")
    y = x * x + x  # x feeds Mul twice and Add once
    g = graph(y)
    x_nodes = [n for n in g.tensors() if n.name == "x"]
    assert len(x_nodes) == 1
    out_of_x = [v for u, v in g.edges if u == x_nodes[0].id]
    assert sorted(g.nodes[v].label for v in out_of_x) == ["Add", "Mul"]
    assert len(set(g.edges)) == len(g.edges)


def test_constants_that_do_not_require_grad_are_not_drawn():
    x = _t((3,), "x")
    c = _t((3,), "c", requires_grad=False)
    g = graph(x * c)
    assert {n.name for n in g.tensors()} == {"x", None}
    assert len(g.tensors()) == 2 and len(g.ops()) == 1


def test_names_argument_labels_tensors_and_explicit_name_wins():
    x, w = _t((2,), None), _t((2,), "weight")
    g = graph((x * w).sum(), names={"input": x, "ignored": w})
    assert {n.name for n in g.tensors() if n.name} == {"input", "weight"}


def test_named_edges_contract_unnamed_intermediates():
    x = _t((4, 2), "x")
    h = (x * 2.0).relu()
    h.name = "h"
    y = (h.exp() + x).sum()
    y.name = "y"
    assert graph(y).named_edges() == {("x", "h"), ("h", "y"), ("x", "y")}
    c = graph(y).contract()
    assert len(c.nodes) == 3 and len(c.edges) == 3 and not c.ops()


def test_bn_graph_edges_match_the_homework():
    from tapegrad.experiments.bn_graph import HOMEWORK_EDGES, batch_norm_from_primitives

    X, gamma, beta = _t((5, 3), "X"), _t((3,), "gamma"), _t((3,), "beta")
    Y = batch_norm_from_primitives(X, gamma, beta)
    assert graph(Y).named_edges() == HOMEWORK_EDGES
    assert len(HOMEWORK_EDGES) == 8


def test_leaf_without_tape_and_bad_argument():
    x = _t((2,), "x", requires_grad=False)
    g = graph(x)
    assert len(g.nodes) == 1 and not g.edges
    with pytest.raises(TypeError, match="graph: tensor must be a Tensor"):
        graph(np.zeros(2))


def test_to_dot_is_valid_looking_text_with_labels_and_escapes():
    x = _t((2, 2), 'a "quoted" name')
    g = graph(x.sum())
    dot = g.to_dot(title="t")
    assert dot.startswith("digraph tape {") and dot.rstrip().endswith("}")
    assert 'a \\"quoted\\" name\\n(2, 2) float64' in dot
    assert dot.count("->") == len(g.edges) == 2
    assert "Sum\\n()" in dot


def test_render_without_graphviz_says_how_to_get_it(monkeypatch, tmp_path):
    g = graph(_t((2,), "x").sum())
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    with pytest.raises(GraphvizNotFoundError, match="apt-get install graphviz"):
        g.render(tmp_path / "g.png")
    # DOT text needs nothing
    assert g.render(tmp_path / "g.dot").read_text() == g.to_dot()
    with pytest.raises(ValueError, match="Graph.render: path must end in"):
        g.render(tmp_path / "g.jpg2")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_render_png_and_svg(tmp_path):
    g = graph((_t((2, 3), "x") * 3.0).sum())
    png = g.render(tmp_path / "g.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = g.render(tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "Mul" in svg and "(2, 3)" in svg


def test_graph_after_backward_raises_unless_the_graph_was_retained():
    x = _t((3,), "x")
    y = (x * 2.0).sum()
    y.backward(retain_graph=True)
    assert len(graph(y).ops()) == 2
    y.backward()
    with pytest.raises(ValueError, match=r"graph: the tape .* was freed by backward\(\)"):
        graph(y)
