"""The autograd engine: graph order, accumulation, freeing, grad modes, errors."""

import gc
import time
import weakref

import numpy as np
import pytest

import minires
from minires import backend
from minires.autograd import Function, Tensor, register_backward_observer


def test_reused_tensor_gets_summed_gradient():
    # a = 1; b = a + a; c = b + b  ->  c = 4a, dc/da = 4 (not 2, as a naive walk gives)
    a = minires.tensor(1.0, requires_grad=True)
    b = a + a
    c = b + b
    c.backward()
    assert c.item() == 4.0
    assert a.grad.item() == 4.0


def test_diamond_graph():
    # x -> (y1 = x^2, y2 = 3x) -> z = y1 * y2 = 3x^3, dz/dx = 9x^2
    x = minires.tensor(2.0, dtype="float64", requires_grad=True)
    y1, y2 = x * x, 3 * x
    z = y1 * y2
    z.backward()
    assert z.item() == pytest.approx(24.0)
    assert x.grad.item() == pytest.approx(36.0)


def _backward_order(loss):
    """The Functions in the order backward ran them (seen through an observer)."""
    ran = []
    with register_backward_observer(lambda function, *_: ran.append(function)):
        loss.backward(retain_graph=True)
    return ran


def test_backward_runs_every_consumer_before_its_producer_once():
    x = minires.tensor(1.0, requires_grad=True)
    y = x.exp()
    z = y * y + y.log()  # y is consumed by Mul and Log
    order = _backward_order(z)
    assert len(order) == len(set(order)) == 4  # Add, Mul, Log, Exp: each exactly once
    position = {f: i for i, f in enumerate(order)}
    for f in order:
        for t in f.inputs:
            if t.creator is not None:
                assert position[t.creator] > position[f], "a producer ran before its consumer"


def test_backward_visits_by_generation_highest_first():
    # A tensor used by a short and a long branch: its creator must wait for the long one.
    x = minires.tensor(0.5, dtype="float64", requires_grad=True)
    a = x.tanh()
    long_branch = a.exp().exp().exp()
    loss = long_branch + a
    order = _backward_order(loss)
    generations = [f.generation for f in order]
    assert generations == sorted(generations, reverse=True)
    assert order[-1] is a.creator
    x.zero_grad()
    loss.backward()
    expected = (np.exp(np.exp(np.exp(np.tanh(0.5)))) * np.exp(np.exp(np.tanh(0.5)))
                * np.exp(np.tanh(0.5)) + 1) * (1 - np.tanh(0.5) ** 2)
    assert x.grad.item() == pytest.approx(expected, rel=1e-12)


def test_generation_is_one_more_than_the_newest_input():
    x = minires.tensor(1.0, requires_grad=True)
    y = x * 2          # generation 1
    z = y.exp().exp()  # 3
    w = z + x          # max(3, 0) + 1 = 4
    assert (x.generation, y.generation, z.generation, w.generation) == (0, 1, 3, 4)
    assert w.creator.generation == 3


def test_gradients_accumulate_and_zero_grad_clears():
    w = minires.tensor([1.0, 2.0], requires_grad=True)
    (w * 3).sum().backward()
    (w * 3).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [6.0, 6.0])
    w.zero_grad()
    assert w.grad is None
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 4.0])


def test_second_backward_on_freed_graph_raises():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    first = x.grad.numpy().copy()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), first)  # no silent double counting


def test_retain_graph_allows_second_backward():
    x = minires.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp([1.0, 2.0]))


def test_graph_is_freed_after_backward():
    x = minires.tensor(np.ones(1000), requires_grad=True)
    y = x.exp()
    function = y.creator
    y.sum().backward()
    # the function no longer holds its saved output or inputs
    assert not hasattr(function, "y") and not hasattr(function, "inputs")


def test_graph_is_garbage_once_the_loss_is_dropped():
    x = minires.tensor(np.ones(10), requires_grad=True)
    loss = (x.exp() * 2).sum()
    creator_ref = weakref.ref(loss.creator)
    del loss
    gc.collect()
    assert creator_ref() is None


def test_long_chain_backprops_without_recursion_and_in_linear_time():
    def chain_time(n):
        x = minires.tensor(1.0, dtype="float64", requires_grad=True)
        y = x
        for _ in range(n):
            y = y * 1.0001
        start = time.perf_counter()
        y.backward()
        return time.perf_counter() - start, x.grad.item()

    t_10k, grad = chain_time(10_000)
    assert grad == pytest.approx(1.0001**10_000)
    t_20k, _ = chain_time(20_000)
    # linear: twice the graph takes about twice the time (generous bound for noisy CI)
    assert t_20k < 5 * t_10k + 0.05


def test_no_grad_records_nothing():
    x = minires.tensor([1.0], requires_grad=True)
    with minires.no_grad():
        y = x * 2
        with minires.enable_grad():
            z = x * 2
    assert y.creator is None and not y.requires_grad
    assert z.requires_grad
    assert minires.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    z = (y.detach() * x).sum()  # only the direct x factor carries gradient
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 4.0])
    assert y.detach().data is y.data


def test_retain_grad_on_intermediate():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [6.0, 12.0])


def test_unused_output_of_multi_output_function_gets_zero_gradient():
    class SplitHalves(Function):
        def forward(self, x):
            half = x.shape[0] // 2
            return x[:half].copy(), x[half:].copy()

        def backward(self, g_first, g_second):
            return np.concatenate([g_first, g_second])

    x = minires.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    first, _second = SplitHalves()(x)
    (first * 5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0, 0.0, 0.0])


# ------------------------------------------------------------------------ errors


def test_non_scalar_backward_needs_gradient():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shape \(2,\)"):
        (x * 2).backward()


def test_backward_gradient_shape_is_checked():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        minires.tensor(1.0).backward()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        minires.tensor([1, 2, 3], requires_grad=True)


def test_mismatched_shapes_name_both_shapes():
    a, b = minires.ones(2, 3), minires.ones(4)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        a @ b


def test_mixing_devices_names_both(monkeypatch):
    # Pretend one tensor lives on the GPU, so the check runs without CuPy.
    a, b = minires.ones(2), minires.ones(2)
    monkeypatch.setattr(Tensor, "device", property(lambda t: "cuda" if t is b else "cpu"))
    with pytest.raises(RuntimeError, match="cpu.*cuda"):
        a + b


@pytest.mark.skipif(minires.is_cuda_available(), reason="a GPU is available here")
def test_cuda_without_cupy_or_gpu_says_what_is_missing():
    with pytest.raises(RuntimeError, match="(CuPy|GPU)") as info:
        minires.ones(2).to("cuda")
    assert "cupy" in str(info.value).lower()


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="tpu"):
        minires.ones(2).to("tpu")


# ------------------------------------------------------------------------ tensor basics


def test_default_dtype_and_switching():
    assert minires.tensor([1.0]).dtype == np.float32
    assert minires.tensor([1]).dtype == np.int64
    assert minires.tensor(np.ones(2)).dtype == np.float64  # arrays keep their dtype
    with minires.default_dtype(np.float64):
        assert minires.tensor([1.0]).dtype == np.float64
        assert minires.randn(2).dtype == np.float64
    assert minires.get_default_dtype() == np.float32
    with pytest.raises(TypeError):
        minires.set_default_dtype(np.int32)


def test_scalars_do_not_promote_float32():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = (2 * x + 1.5) / 3 - x**2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_manual_seed_reproduces_random_tensors():
    minires.manual_seed(7)
    a = minires.randn(5).numpy()
    minires.manual_seed(7)
    b = minires.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    state = backend.get_rng_state()
    c = minires.rand(3).numpy()
    backend.set_rng_state(state)
    np.testing.assert_array_equal(minires.rand(3).numpy(), c)


def test_tensor_properties_and_export():
    x = minires.tensor(np.arange(6.0).reshape(2, 3), name="x")
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert x.device == "cpu" and x.cpu() is x
    assert isinstance(x.numpy(), np.ndarray)
    assert minires.tensor([[3.5]]).item() == 3.5
    with pytest.raises(ValueError, match="1-element"):
        x.item()
    assert "name='x'" in repr(x)
    y = x.to(dtype=np.float32)
    assert y.dtype == np.float32


def test_tensor_copies_its_input():
    data = np.ones(3)
    x = minires.tensor(data)
    data[0] = 5
    assert x.numpy()[0] == 1


# ------------------------------------------------------------------------ dropped outputs


class _Halves(Function):
    """Two outputs; records the dtype of the gradient backward received for each."""

    def forward(self, x):
        half = x.shape[0] // 2
        return x[:half].copy(), x[half:].copy()

    def backward(self, g_first, g_second):
        self.seen = (g_first.dtype, g_second.dtype, g_second.shape)
        return np.concatenate([g_first, g_second])


def test_garbage_collected_output_gets_zero_gradient_of_its_shape_and_dtype():
    x = minires.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype="float64", requires_grad=True)
    function = _Halves()
    first, second = function(x)
    second_ref = weakref.ref(second)
    del second
    gc.collect()
    assert second_ref() is None  # really gone: only its shape, dtype and device were kept
    seen = []
    with register_backward_observer(lambda f, g_out, g_in: seen.append(g_out)):
        (first * 5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0, 0.0, 0.0, 0.0])
    zero = seen[-1][1]
    assert zero.shape == (3,) and zero.dtype == np.float64 and not zero.any()


def test_split_with_a_dropped_piece_matches_torch(torch):
    data = np.random.default_rng(0).standard_normal((7, 3))
    x = minires.tensor(data, requires_grad=True)
    first, second, third = x.split(3)  # sizes 3, 3, 1 as torch.split
    del second
    gc.collect()
    (first * 2 + third.sum()).sum().backward()
    xt = torch.tensor(data, requires_grad=True)
    first_t, _, third_t = torch.split(xt, 3)
    (first_t * 2 + third_t.sum()).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=0, atol=0)
    assert not x.grad.numpy()[3:6].any()


def test_split_by_sections_gradcheck_and_errors():
    x = minires.randn(2, 6, dtype="float64", requires_grad=True)
    minires.gradcheck(lambda t: minires.cat([p * (i + 1) for i, p in
                                             enumerate(t.split([1, 2, 3], dim=1))], dim=1),
                      x).assert_ok()
    with pytest.raises(ValueError, match="split_size_or_sections"):
        x.split([1, 2], dim=1)
    with pytest.raises(ValueError, match="split_size"):
        x.split(0, dim=1)
    with pytest.raises(ValueError, match="dim"):
        x.split(2, dim=5)


# ------------------------------------------------------------------------ hooks


def test_hook_sees_the_full_gradient_once_and_can_replace_it(torch):
    data = np.array([0.5, -1.0, 2.0])
    seen, seen_torch = [], []

    def run(lib, tensor_fn, record):
        x = tensor_fn(data)
        y = x * x          # y is used twice below: the hook must see the sum, once
        y.register_hook(lambda g: record.append(g.numpy().copy()) or g * 3)
        (y * 2 + y.exp()).sum().backward()
        return x.grad.numpy()

    ours = run(minires, lambda d: minires.tensor(d, requires_grad=True), seen)
    theirs = run(torch, lambda d: torch.tensor(d, requires_grad=True), seen_torch)
    assert len(seen) == len(seen_torch) == 1
    np.testing.assert_allclose(seen[0], seen_torch[0], rtol=1e-12)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)  # the tripled gradient flowed on
    np.testing.assert_allclose(ours, 3 * (2 + np.exp(data**2)) * 2 * data, rtol=1e-12)


def test_leaf_and_root_hooks_and_remove():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    handle = x.register_hook(lambda g: calls.append("leaf") or g + 1)
    y = (x * 3).sum()
    y.register_hook(lambda g: calls.append(("root", g.item())))  # None keeps the gradient
    y.backward()
    assert calls == [("root", 1.0), "leaf"]
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0])  # the replacement was kept
    handle.remove()
    x.zero_grad()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    assert calls == [("root", 1.0), "leaf"]


def test_hooks_run_on_intermediates_nobody_else_holds(torch):
    # out = out.sigmoid() in a loop drops the Python reference to each activation; its hook
    # must still run (as in PyTorch), also when backward frees the graph as it goes.
    def run(lib, tensor_fn):
        h = tensor_fn(0.3)
        seen = []
        out = h
        for layer in range(4):
            out = out.sigmoid()
            out.register_hook(lambda g, layer=layer: seen.append((layer, g.item())))
        out.backward()
        return seen

    ours = run(minires, lambda v: minires.tensor(v, dtype="float64", requires_grad=True))
    theirs = run(torch, lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True))
    assert [layer for layer, _ in ours] == [3, 2, 1, 0]
    np.testing.assert_allclose([g for _, g in ours], [g for _, g in theirs], rtol=1e-12)


def test_hook_with_retain_grad_stores_the_replacement():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.retain_grad()
    y.register_hook(lambda g: g * 10)
    y.sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [10.0, 10.0])
    np.testing.assert_array_equal(x.grad.numpy(), [20.0, 20.0])


def test_hook_errors_are_clear():
    with pytest.raises(RuntimeError, match="does not require grad"):
        minires.tensor([1.0]).register_hook(lambda g: g)
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="callable"):
        x.register_hook(3)
    y = x * 2
    y.register_hook(lambda g: np.ones(3))
    with pytest.raises(RuntimeError, match=r"shape \(3,\).*\(2,\)"):
        y.sum().backward()
    assert x.grad is None  # a failed backward writes no gradient


# ------------------------------------------------------------------------ engine details


def test_add_and_sub_send_no_gradient_to_constants():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    constant = minires.tensor([3.0, 4.0])
    sent = []
    with register_backward_observer(lambda f, g_out, g_in: sent.append((type(f), g_in))):
        (x + constant - constant).sum().backward()
    kinds = {kind.__name__: grads for kind, grads in sent}
    assert kinds["Add"][1] is None and kinds["Sub"][1] is None
    assert kinds["Add"][0] is not None and kinds["Sub"][0] is not None
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


def test_engine_module_imports_nothing_above_itself():
    import ast
    import inspect

    from minires import autograd, backward

    # The engine is two modules (the graph, the backward pass); they import only backend
    # and each other.
    for module in (autograd, backward):
        tree = ast.parse(inspect.getsource(module))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        minires_modules = {m for m in imported if m and m.startswith("minires")}
        assert minires_modules <= {"minires", "minires.autograd", "minires.backward"}, (
            module.__name__, minires_modules)  # `from minires import backend` and each other
    assert minires.tensor([1.0]).to(dtype="float64").dtype == np.float64  # installed by ops


def test_observer_handle_removes_it():
    seen = []
    handle = register_backward_observer(lambda *args: seen.append(1))
    (minires.tensor([1.0], requires_grad=True) * 2).sum().backward()
    handle.remove()
    (minires.tensor([1.0], requires_grad=True) * 2).sum().backward()
    assert len(seen) == 2  # Sum and Mul of the first pass only
    with pytest.raises(TypeError, match="callable"):
        register_backward_observer("not a function")


# ------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "pow"])
def test_float32_with_integer_tensor_stays_float32_as_torch(torch, op):
    import operator

    fn = getattr(operator, op)
    ours = fn(minires.tensor([1.0, 2.0]), minires.tensor([1, 2]))
    theirs = fn(torch.tensor([1.0, 2.0], dtype=torch.float32), torch.tensor([1, 2]))
    assert ours.dtype == np.float32 and str(theirs.dtype) == "torch.float32"
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    reflected = fn(minires.tensor([1, 2]), minires.tensor([1.0, 2.0]))
    assert reflected.dtype == np.float32


def test_integer_division_and_mixed_joins_follow_torch():
    assert (minires.tensor([1, 2]) / minires.tensor([2, 4])).dtype == np.float32
    assert minires.cat([minires.ones(2), minires.tensor([1, 2])]).dtype == np.float32
    assert minires.stack([minires.ones(2), minires.tensor([1, 2])]).dtype == np.float32
    assert minires.where(np.array([True, False]), minires.ones(2),
                         minires.tensor([0, 0])).dtype == np.float32
    assert (minires.ones(2, 2) @ minires.tensor([[1, 0], [0, 1]])).dtype == np.float32
    assert (minires.ones(2) + minires.ones(2, dtype="float64")).dtype == np.float64
    assert (minires.tensor([1, 2]) + minires.tensor([3, 4])).dtype == np.int64
    w = minires.tensor([1.0, 2.0], requires_grad=True)
    (w * minires.tensor([3, 4])).sum().backward()
    assert w.grad.dtype == np.float32
    np.testing.assert_array_equal(w.grad.numpy(), [3.0, 4.0])


def test_empty_mean_is_nan_without_a_warning(torch):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = minires.zeros((0, 3)).mean()
        per_column = minires.zeros((0, 3)).mean(axis=0)
        per_row = minires.zeros((0, 3)).mean(axis=1)
    assert np.isnan(whole.item()) and whole.dtype == np.float32
    assert per_column.shape == (3,) and np.isnan(per_column.numpy()).all()
    assert per_row.shape == (0,)
    assert torch.zeros(0, 3).mean().isnan().item()  # the behaviour matched
    x = minires.zeros((0, 3), requires_grad=True)
    x.mean(axis=0).sum().backward()
    assert x.grad.shape == (0, 3)
    assert minires.tensor([1, 2]).mean().item() == pytest.approx(1.5)


def test_dropped_output_hooks_trace_and_nan_mean_on_the_chosen_device(device):
    # on the CPU by default; on the GPU (real or emulated) with --device cuda[-emulated]
    import minires.viz

    x = minires.tensor(np.arange(6.0), dtype="float32", device=device, requires_grad=True)
    first, second = x.split([2, 4])
    del second
    gc.collect()
    x.register_hook(lambda g: g * 2)
    with minires.viz.trace() as t:
        (first * 3).sum().backward()
    assert x.grad.device == device and x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [6, 6, 0, 0, 0, 0])
    assert [r.function for r in t.records] == ["Sum", "Mul", "Split"]
    assert t.records[-1].grad_out_norms == (pytest.approx(np.sqrt(18)), 0.0)
    empty = minires.zeros((0, 2), device=device).mean(axis=0)
    assert empty.device == device and np.isnan(empty.numpy()).all()
    mixed = minires.ones(2, device=device) * minires.tensor([1, 2], device=device)
    assert mixed.dtype == np.float32 and mixed.device == device


def test_the_graph_keeps_no_intermediate_tensor_only_what_forwards_saved():
    # An intermediate nothing else holds is freed at once (its consumer keeps an Edge);
    # backward still reaches the leaf through it.
    import weakref

    x = minires.tensor([1.0, -2.0, 3.0], dtype="float64", requires_grad=True)
    y = x * 2.0
    alive = weakref.ref(y)
    z = (y.relu() * 3.0).sum()
    del y
    assert alive() is None, "the graph kept an intermediate tensor alive"
    assert isinstance(z.creator.inputs[0], minires.autograd.Edge)
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 0.0, 6.0])


def test_a_hook_on_a_dropped_intermediate_still_runs():
    x = minires.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    seen = []
    y = x.exp()
    y.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 2)
    loss = (y * 1.0).sum()
    del y
    loss.backward()
    np.testing.assert_array_equal(seen[0], [1.0, 1.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp([1.0, 2.0]))
