"""minires.viz.to_dot / draw_graph: every tensor and Function of the graph, once; edges in
forward order; gradient norms once computed; a layout in topological order."""

import re

import numpy as np
import pytest

import minires
from minires import viz
from minires.viz import graph


def _mlp():
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((8, 4)), name="x")
    w1 = minires.tensor(rng.standard_normal((4, 6)), requires_grad=True, name="w1")
    b1 = minires.zeros(6, requires_grad=True)
    w2 = minires.tensor(rng.standard_normal((6, 1)), requires_grad=True, name="w2")
    loss = ((x @ w1 + b1).relu() @ w2).sigmoid().mean()
    return loss, {"x": x, "w1": w1, "b1": b1, "w2": w2}


def _parse(dot):
    nodes = dict(re.findall(r'^\s+(n\d+) \[.*label="(.*)"\];$', dot, flags=re.M))
    edges = re.findall(r"^\s+(n\d+) -> (n\d+);$", dot, flags=re.M)
    return nodes, edges


def test_dot_lists_every_tensor_and_function_once_with_forward_edges():
    loss, leaves = _mlp()
    dot = viz.to_dot(loss, params={"bias1": leaves["b1"]})
    assert dot.startswith("digraph minires {") and dot.rstrip().endswith("}")
    nodes, edges = _parse(dot)
    labels = sorted(nodes.values())
    functions = [lab for lab in labels if "\\n" not in lab and "(" not in lab]
    assert sorted(functions) == ["Add", "MatMul", "MatMul", "Mean", "ReLU", "Sigmoid"]
    # 4 leaves + 6 outputs; each Function: its inputs in, its output out
    assert len(nodes) == 6 + 10
    assert len(edges) == (2 + 2 + 1 + 2 + 1 + 1) + 6
    assert "w1\\n(4, 6) float64" in labels and "bias1\\n(6,) float32" in labels
    assert not any("|grad|" in lab for lab in labels)  # before backward: no gradients
    w1 = next(k for k, v in nodes.items() if v.startswith("w1\\n"))
    assert [nodes[dst] for src, dst in edges if src == w1] == ["MatMul"]
    root = next(k for k, v in nodes.items() if v == "() float64")
    assert [nodes[src] for src, dst in edges if dst == root] == ["Mean"]


def test_gradient_norms_appear_after_backward():
    loss, leaves = _mlp()
    loss.backward(retain_graph=True)
    nodes, _ = _parse(viz.to_dot(loss))
    norm = np.linalg.norm(leaves["w1"].grad.numpy())
    assert f"w1\\n(4, 6) float64\\n|grad| {norm:.3g}" in nodes.values()
    # after a plain backward the graph is freed: still drawn, marked as such
    loss2, _ = _mlp()
    loss2.backward()
    assert "Mean (freed)" in viz.to_dot(loss2)


def test_a_tensor_used_twice_is_one_node_and_deep_graphs_need_no_recursion():
    a = minires.tensor([1.0, 2.0], requires_grad=True, name="a")
    y = a * a + a
    nodes, edges = _parse(viz.to_dot(y))
    assert list(nodes.values()).count("a\\n(2,) float32") == 1
    a_key = next(k for k, v in nodes.items() if v.startswith("a\\n"))
    assert sum(src == a_key for src, _ in edges) == 3  # Mul twice, Add once
    deep = a
    for _ in range(3000):
        deep = deep * 1.0
    assert viz.to_dot(deep).count("Mul") == 3000


def test_layout_is_topological_and_leaves_sit_above_their_first_use():
    loss, _ = _mlp()
    nodes = graph._collect(loss, {})
    levels = graph._layout(nodes)
    for node in nodes.values():
        for parent in node.parents:
            assert nodes[parent].level < node.level
    by_label = {n.label: n for n in nodes.values()}
    consumer = [n for n in nodes.values() if by_label["w2\n(6, 1) float64"].key in n.parents]
    assert by_label["w2\n(6, 1) float64"].level == consumer[0].level - 1
    assert levels == max(n.level for n in nodes.values()) + 1
    for level in range(levels):  # no two nodes in the same place
        xs = [n.x for n in nodes.values() if n.level == level]
        assert len(xs) == len(set(xs))


def test_draw_graph_writes_a_png_without_graphviz(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    loss, _ = _mlp()
    loss.backward(retain_graph=True)
    fig = viz.draw_graph(loss, tmp_path / "graph.png")
    assert (tmp_path / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "Sigmoid" in texts and any(t.startswith("w1\n") and "|grad|" in t for t in texts)
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_bad_input_and_graphs_too_big_to_draw():
    with pytest.raises(TypeError, match="expected a minires Tensor"):
        viz.to_dot(np.ones(3))
    big = minires.tensor([1.0], requires_grad=True)
    for _ in range(graph.MAX_DRAWN_NODES):
        big = big * 2.0
    with pytest.raises(ValueError, match="use to_dot"):
        viz.draw_graph(big)
