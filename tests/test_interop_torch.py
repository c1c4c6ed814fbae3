"""minires.interop.to_torch / from_torch: every model family against its PyTorch twin.

For each family the minires model gets non-trivial BN parameters and running statistics,
then the twin from ``to_torch`` must have the same state-dict keys, shapes and dtypes and
give the same logits, input gradient, parameter gradients and updated running statistics
in train and in eval mode (relative error max|a - b| / max|b|: 1e-10 in float64, 1e-5 in
float32, gradients measured as ``compare`` and ``test_twin_matches_in_float32`` explain);
one SGD step (momentum, weight decay) must leave equal weights; and
``from_torch`` must bring torch's weights back, strictly.
"""

import copy

import numpy as np
import pytest

import minires
from minires import interop, models, optim
from minires.models import Bottleneck, ResNet
from tests.interop_models import FAMILIES, IDS, SMALL, build


def relative_error(a, b, floor=1e-300) -> float:
    """max|a - b| / max|b|; ``floor`` bounds the denominator from below."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), floor))


def compare(torch, ours, twin, x, tolerance, rng):
    """Logits, input and parameter gradients, running stats: train mode, then eval mode.
    Returns the largest relative error seen per quantity."""
    worst = {"logits": 0.0, "grads": 0.0}
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        twin.train(mode == "train")
        ours.zero_grad()
        twin.zero_grad(set_to_none=True)
        x_ours = minires.tensor(x, requires_grad=True)
        x_twin = torch.tensor(x, requires_grad=True)
        logits, logits_twin = ours(x_ours), twin(x_twin)
        error = relative_error(logits.numpy(), logits_twin.detach().numpy())
        assert error < tolerance, f"{mode}: logits differ by {error:.2e}"
        worst["logits"] = max(worst["logits"], error)
        g = rng.standard_normal(logits.shape).astype(x.dtype)
        logits.backward(g)
        logits_twin.backward(torch.tensor(g))
        error = relative_error(x_ours.grad.numpy(), x_twin.grad.numpy())
        assert error < tolerance, f"{mode}: input gradient differs by {error:.2e}"
        twin_params = dict(twin.named_parameters())
        assert set(twin_params) == {name for name, _ in ours.named_parameters()}
        # Each gradient against its own largest entry, but at least 1e-4 of the model's
        # largest gradient: one that is exactly 0 in exact arithmetic (a BN bias that feeds
        # only train-mode BNs, which cancel a per-channel shift) is rounding noise in both
        # (measured: 1e-16 of the largest, 8e-11 against a 1e-6 floor: too close to 1e-10).
        fraction = 1e-4
        floor = fraction * max(float(np.max(np.abs(p.grad.numpy())))
                           for _, p in ours.named_parameters())
        for name, p in ours.named_parameters():
            error = relative_error(p.grad.numpy(), twin_params[name].grad.numpy(), floor)
            assert error < tolerance, f"{mode}: gradient of {name} differs by {error:.2e}"
            worst["grads"] = max(worst["grads"], error)
        twin_state = twin.state_dict()
        for name, value in ours.state_dict().items():  # running stats updated alike
            np.testing.assert_allclose(value, twin_state[name].numpy(), rtol=tolerance,
                                       atol=tolerance * 1e-2, err_msg=f"{mode}: {name}")
    return worst


@pytest.mark.parametrize(("name", "constructor", "shape"), FAMILIES, ids=IDS)
def test_twin_has_the_same_state_dict(torch, name, constructor, shape):
    ours = build(constructor, np.float32)
    twin = interop.to_torch(ours)
    state, twin_state = ours.state_dict(), twin.state_dict()
    assert list(twin_state) == list(state)  # same keys, same order
    for key, value in state.items():
        assert tuple(twin_state[key].shape) == value.shape, key
        assert str(twin_state[key].dtype) == f"torch.{value.dtype}", key
        np.testing.assert_array_equal(twin_state[key].numpy(), value, err_msg=key)
    assert twin.training and ours.training


@pytest.mark.parametrize(("name", "constructor", "shape"), FAMILIES, ids=IDS)
def test_twin_matches_in_float64(torch, name, constructor, shape):
    rng = np.random.default_rng(1)
    ours = build(constructor, np.float64)
    twin = interop.to_torch(ours)
    assert next(twin.parameters()).dtype == torch.float64
    compare(torch, ours, twin, rng.standard_normal(shape), 1e-10, rng)


@pytest.mark.parametrize(("name", "constructor", "shape"), FAMILIES, ids=IDS)
def test_twin_matches_in_float32(torch, name, constructor, shape):
    """Logits to 1e-5.  Gradients: to 1e-5 of the largest gradient, or, where float32
    itself is not that accurate (a deep plain net's train-mode BNs amplify rounding; a
    max-pool tie may pick another winner), no further from PyTorch's float32 gradient than
    twice PyTorch's own distance from the same net computed in float64."""
    torch.set_default_dtype(torch.float32)
    rng = np.random.default_rng(2)
    ours = build(constructor, np.float32)
    exact = copy.deepcopy(ours).to(dtype=np.float64)  # the same weights, in float64
    twin = interop.to_torch(ours)
    assert next(twin.parameters()).dtype == torch.float32
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal((shape[0], ours.fc.out_features)).astype(np.float32)
    for mode in (True, False):
        for net in (ours, exact, twin):
            net.train(mode)
        ours_logits, ours_grads = _logits_and_grads(minires, ours, x, g)
        exact_logits, exact_grads = _logits_and_grads(minires, exact, x.astype(np.float64), g)
        twin_logits, twin_grads = _logits_and_grads(torch, twin, x, g)
        error = relative_error(ours_logits, twin_logits)
        assert error < 1e-5, f"train={mode}: logits differ by {error:.2e}"
        largest = max(np.max(np.abs(v)) for v in exact_grads.values())
        for key, exact_grad in exact_grads.items():
            pair = np.max(np.abs(ours_grads[key] - twin_grads[key])) / largest
            torch_error = np.max(np.abs(twin_grads[key] - exact_grad)) / largest
            assert pair < max(1e-5, 2 * torch_error), \
                f"train={mode}: gradient of {key} differs by {pair:.2e} of the largest"


def _logits_and_grads(framework, net, x, g):
    """(logits, {name: gradient} with the input's gradient as "input"), as float64 NumPy."""
    if framework is minires:
        net.zero_grad()
        x_in = minires.tensor(x, requires_grad=True)
        logits = net(x_in)
        logits.backward(g.astype(logits.dtype))
        grads = {k: p.grad.numpy() for k, p in net.named_parameters()}
        grads["input"] = x_in.grad.numpy()
        return logits.numpy().astype(np.float64), {k: v.astype(np.float64)
                                                   for k, v in grads.items()}
    net.zero_grad(set_to_none=True)
    x_in = framework.tensor(x, requires_grad=True)
    logits = net(x_in)
    logits.backward(framework.tensor(g))
    grads = {k: p.grad.numpy() for k, p in net.named_parameters()}
    grads["input"] = x_in.grad.numpy()
    return logits.detach().numpy().astype(np.float64), {k: v.astype(np.float64)
                                                        for k, v in grads.items()}


@pytest.mark.parametrize(("name", "constructor", "shape"),
                         [FAMILIES[1], FAMILIES[5], FAMILIES[8]], ids=[IDS[1], IDS[5], IDS[8]])
def test_one_sgd_step_leaves_equal_weights(torch, name, constructor, shape):
    rng = np.random.default_rng(3)
    ours = build(constructor, np.float64)
    twin = interop.to_torch(ours)
    x, y = rng.standard_normal(shape), rng.integers(0, ours.fc.out_features, shape[0])
    settings = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)
    ours_opt, twin_opt = optim.SGD(ours.parameters(), **settings), \
        torch.optim.SGD(twin.parameters(), **settings)
    for _ in range(2):  # the second step uses the momentum buffer
        ours_opt.zero_grad()
        twin_opt.zero_grad()
        minires.functional.cross_entropy(ours(minires.tensor(x)), y).backward()
        torch.nn.functional.cross_entropy(twin(torch.tensor(x)), torch.tensor(y)).backward()
        ours_opt.step()
        twin_opt.step()
    twin_state = twin.state_dict()
    before = build(constructor, np.float64).state_dict()
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value, twin_state[key].numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    assert not np.allclose(ours.state_dict()["fc.weight"], before["fc.weight"])


def test_from_torch_brings_trained_weights_back(torch):
    rng = np.random.default_rng(4)
    ours = build(FAMILIES[1][1], np.float64)
    twin = interop.to_torch(ours)
    with torch.no_grad():  # change every weight and running statistic on the torch side
        for value in twin.state_dict().values():
            value.add_(torch.as_tensor(rng.standard_normal(value.shape) * 0.01,
                                       dtype=value.dtype) if value.is_floating_point()
                       else torch.tensor(5))
    back = interop.from_torch(twin, build(FAMILIES[1][1], np.float64, seed=9))
    x = rng.standard_normal((2, 3, 16, 16))
    back.eval()
    twin.eval()
    error = relative_error(back(minires.tensor(x)).numpy(), twin(torch.tensor(x)).detach().numpy())
    assert error < 1e-12
    assert back.state_dict()["bn1.num_batches_tracked"].dtype == np.int64
    assert int(back.state_dict()["bn1.num_batches_tracked"]) == 8


def test_from_torch_accepts_state_dicts_and_casts_dtype(torch):
    source = interop.to_torch(build(FAMILIES[0][1], np.float64))
    target = build(FAMILIES[0][1], np.float32, seed=5)
    interop.from_torch(source.state_dict(), target)
    state = target.state_dict()
    assert state["conv1.weight"].dtype == np.float32
    np.testing.assert_allclose(state["conv1.weight"], source.conv1.weight.detach().numpy(),
                               rtol=1e-6)


def test_from_torch_lists_every_problem(torch):
    source = dict(interop.to_torch(build(FAMILIES[0][1], np.float32)).state_dict())
    target = build(FAMILIES[0][1], np.float32)
    before = target.state_dict()
    del source["fc.bias"]
    source["extra.weight"] = torch.zeros(3)
    source["conv1.weight"] = torch.zeros(4, 3, 5, 5)
    with pytest.raises(ValueError) as info:
        interop.from_torch(source, target)
    message = str(info.value)
    assert "missing: fc.bias" in message
    assert "unexpected: extra.weight" in message
    assert "conv1.weight: source (4, 3, 5, 5), model (4, 3, 3, 3)" in message
    after = target.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing changed


def test_from_torch_explains_a_ddp_prefix_and_unwraps_wrappers(torch):
    twin = interop.to_torch(build(FAMILIES[0][1], np.float32))
    prefixed = {f"module.{k}": v for k, v in twin.state_dict().items()}
    with pytest.raises(ValueError, match="DistributedDataParallel"):
        interop.from_torch(prefixed, build(FAMILIES[0][1], np.float32))
    wrapped = torch.nn.DataParallel(twin)
    back = interop.from_torch(wrapped, build(FAMILIES[0][1], np.float32, seed=3))
    np.testing.assert_array_equal(back.state_dict()["fc.weight"], twin.fc.weight.detach().numpy())


def test_bad_arguments_are_type_errors(torch):
    with pytest.raises(TypeError, match="minires Module"):
        interop.to_torch(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="state dict"):
        interop.from_torch([1, 2], models.resnet20(**SMALL))

    class Custom(minires.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = minires.nn.Linear(2, 2)

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(TypeError, match="no PyTorch twin for model \\(Custom\\)"):
        interop.to_torch(Custom())


def test_sequential_of_layers_converts(torch):
    nn = minires.nn
    ours = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(),
                         nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.0),
                         nn.Linear(8, 3), nn.Sigmoid())
    twin = interop.to_torch(ours)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(ours(minires.tensor(x)).numpy(),
                               twin(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_torchvision_class_is_used_when_it_imports(torch):
    try:
        import torchvision
    except Exception as err:  # beside torch 2.13.0 PyPI's torchvision fails at import
        pytest.skip(f"torchvision does not import here ({type(err).__name__}: {err}), so "
                    "to_torch builds its own ResNet twin (tested above)")
    ours = build(lambda: models.resnet18(num_classes=10), np.float64)
    twin = interop.to_torch(ours)
    assert isinstance(twin, torchvision.models.ResNet)
    rng = np.random.default_rng(6)
    compare(torch, ours, twin, rng.standard_normal((2, 3, 64, 64)), 1e-10, rng)
    fresh = torchvision.models.resnet18(num_classes=10)
    fresh.load_state_dict(twin.state_dict(), strict=True)


def test_use_torchvision_true_explains_why_not(torch):
    model = ResNet(Bottleneck, (1, 1, 1, 1), num_classes=5, stride_in_1x1=True)
    with pytest.raises((ValueError, ImportError), match="torchvision"):
        interop.to_torch(model, use_torchvision=True)
    assert type(interop.to_torch(model, use_torchvision=False)).__name__ == "TorchResNet"


def test_safetensors_file_loads_into_torch_strictly(torch, tmp_path):
    """A minires-saved state dict is read by safetensors.torch with torchvision's keys."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    resnet18 = lambda: models.resnet18(num_classes=10)  # noqa: E731
    ours = build(resnet18, np.float32)
    path = minires.save(ours.state_dict(), tmp_path / "resnet18.safetensors")
    loaded = safetensors_torch.load_file(str(path))
    assert loaded["layer1.0.bn1.num_batches_tracked"].dtype == torch.int64
    assert "layer2.0.downsample.0.weight" in loaded and "layer1.0.downsample.0.weight" \
        not in loaded  # torchvision's layout: projections where the shape changes
    twin = interop.to_torch(build(resnet18, np.float32, seed=7))
    twin.load_state_dict(loaded, strict=True)
    np.testing.assert_array_equal(twin.fc.weight.detach().numpy(), ours.fc.weight.numpy())
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ours.eval()
    twin.eval()
    assert relative_error(ours(minires.tensor(x)).numpy(),
                          twin(torch.tensor(x)).detach().numpy()) < 1e-5
    back = interop.from_torch(loaded, build(resnet18, np.float32, seed=8))
    np.testing.assert_array_equal(back.state_dict()["layer4.1.bn2.running_var"],
                                  ours.state_dict()["layer4.1.bn2.running_var"])


def test_missing_torch_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'minires\[torch\]'"):
        interop.to_torch(models.resnet20(**SMALL))


def test_importing_interop_imports_neither_torch_nor_onnx():
    import subprocess
    import sys

    code = ("import sys, minires, minires.interop, minires.__main__; "
            "print(sorted(m for m in ('torch', 'onnx', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"
