"""minires.viz.trace: the order and gradient norms of a recorded backward pass."""

import numpy as np
import pytest

import minires
import minires.viz


def _sigmoid_chain(depth, dtype="float64"):
    minires.manual_seed(1)
    x = minires.randn(4, 6, dtype=dtype, requires_grad=True)
    x.name = "x"
    h, hidden = x, []
    for _ in range(depth):
        h = h.sigmoid()
        h.retain_grad()
        hidden.append(h)
    return x, hidden, h.sum()


def test_trace_lists_functions_in_backward_order_with_their_gradient_norms():
    x, hidden, loss = _sigmoid_chain(5)
    with minires.viz.trace() as t:
        loss.backward()
    assert [r.function for r in t.records] == ["Sum"] + ["Sigmoid"] * 5
    assert [r.step for r in t.records] == list(range(1, 7))
    generations = [r.generation for r in t.records]
    assert generations == sorted(generations, reverse=True)
    # grad out of the k-th Sigmoid from the top is the gradient of its output tensor
    for record, tensor in zip(t.records[1:], reversed(hidden), strict=True):
        assert record.grad_out_norms[0] == pytest.approx(np.linalg.norm(tensor.grad.numpy()))
        assert record.gain <= 0.25  # sigma' <= 1/4: the vanishing-gradient factor
    assert t.records[-1].grad_in_norms[0] == pytest.approx(np.linalg.norm(x.grad.numpy()))
    assert t.records[-1].inputs == ("x",)


def test_table_is_readable_text_in_the_same_order():
    _, _, loss = _sigmoid_chain(3)
    with minires.viz.trace() as t:
        loss.backward()
    table = t.table()
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["step", "function", "gen"]
    assert set(lines[1]) <= {"-", " "}
    assert [line.split()[1] for line in lines[2:]] == ["Sum", "Sigmoid", "Sigmoid", "Sigmoid"]
    assert f"{t.records[-1].grad_in_norms[0]:.4g}" in lines[-1]
    assert "Trace(4 records)" == repr(t)


def test_trace_norms_match_torch(torch):
    data = np.random.default_rng(0).standard_normal((3, 5))
    w_data = np.random.default_rng(1).standard_normal((5, 2))
    x, w = minires.tensor(data, requires_grad=True), minires.tensor(w_data, requires_grad=True)
    with minires.viz.trace() as t:
        (x @ w).tanh().sum().backward()
    xt = torch.tensor(data, requires_grad=True)
    wt = torch.tensor(w_data, requires_grad=True)
    y = xt @ wt
    y.retain_grad()
    y.tanh().sum().backward()
    matmul = t.records[-1]
    assert matmul.function == "MatMul"
    assert matmul.grad_out_norms[0] == pytest.approx(y.grad.norm().item(), rel=1e-12)
    assert matmul.grad_in_norms[0] == pytest.approx(xt.grad.norm().item(), rel=1e-12)
    assert matmul.grad_in_norms[1] == pytest.approx(wt.grad.norm().item(), rel=1e-12)


def test_trace_records_only_inside_and_shows_inputs_without_gradient():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    constant = minires.tensor([3.0, 4.0])
    with minires.viz.trace() as t:
        (x * constant).sum().backward()
    (x * constant).sum().backward()  # outside: not recorded
    assert len(t.records) == 2
    mul = t.records[1]
    assert mul.grad_in_norms[1] is None and mul.gain is None
    assert "-" in t.table().splitlines()[-1].split()
    empty = minires.viz.trace()
    assert "no backward pass" in empty.table()
    with empty, pytest.raises(RuntimeError, match="already recording"):
        empty.__enter__()
