"""GPU twins of the op, layer, model and optimizer checks: ``python -m pytest --device cuda``.

With ``--device cuda`` (and CuPy and a GPU) every test here runs a computation twice, on
NumPy arrays and on CuPy arrays starting from the same values, and requires the same
results: every op of tests/test_ops.py through autograd (forward and backward), the nn
layers, whole ResNets forward and backward, optimizer steps, dropout on the GPU.  float64
throughout, so the two devices agree to 1e-10 (relative to the largest magnitude; 1e-9
for whole networks, whose sums run in different orders).  Without the option, or without
CuPy and a GPU, every test is skipped with the reason; ``--device cuda-emulated`` runs them
on the CPU (tests/cudaemu, docs/cuda-emulation.md).  The CUDA kernels themselves are
checked one by one in tests/test_kernels_cuda.py.
"""

import copy

import numpy as np
import pytest

import minires
import minires.nn as nn
from minires import backend
from minires import functional as F
from minires.autograd import Tensor
from minires.models import CifarResNet, plain20, preact_resnet20, resnet18, resnet20
from minires.optim import SGD, Adam
from tests.test_ops import CASES as OP_CASES
from tests.test_ops import _make_inputs

TOL = 1e-10
MODEL_TOL = 1e-9


@pytest.fixture(autouse=True)
def _on_cuda(cuda_device):
    """Every test here needs ``--device cuda`` and a usable GPU (else: skipped, reason)."""
    return cuda_device


def assert_twins(gpu, cpu, tol=TOL, what=""):
    """A GPU array (or Tensor) equals its CPU twin to ``tol`` relative to the largest
    magnitude of the CPU values; same shape and dtype."""
    gpu = gpu.data if isinstance(gpu, Tensor) else gpu
    cpu = cpu.data if isinstance(cpu, Tensor) else cpu
    assert backend.device_of(gpu) == backend.CUDA, f"{what}: not on the GPU"
    got = backend.to_numpy(gpu)
    assert got.shape == cpu.shape and got.dtype == cpu.dtype, (what, got.dtype, cpu.dtype)
    finite = np.abs(cpu[np.isfinite(cpu)]) if cpu.dtype.kind == "f" else np.abs(cpu)
    scale = float(finite.max()) if finite.size else 0.0
    np.testing.assert_allclose(got, cpu, rtol=tol, atol=tol * scale, equal_nan=True,
                               err_msg=what)


# ---------------------------------------------------------------------------- ops


@pytest.mark.parametrize("name, fn, reference, makers", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_op_forward_and_backward_on_gpu_match_cpu(name, fn, reference, makers):
    arrays = _make_inputs(makers, seed=2)
    results = {}
    for device in (backend.CPU, backend.CUDA):
        tensors = [minires.tensor(a, requires_grad=True, device=device) for a in arrays]
        out = fn(*tensors)
        upstream = np.random.default_rng(3).standard_normal(out.shape)
        out.backward(upstream)
        results[device] = (out, [t.grad for t in tensors])
    (cpu_out, cpu_grads), (gpu_out, gpu_grads) = results[backend.CPU], results[backend.CUDA]
    assert_twins(gpu_out, cpu_out, what=f"{name} forward")
    for i, (got, want) in enumerate(zip(gpu_grads, cpu_grads, strict=True)):
        assert (got is None) == (want is None)
        if want is not None:
            assert_twins(got, want, what=f"{name} grad {i}")


# ---------------------------------------------------------------------------- layers


def _bn(features, eval_mode=False, dims=2):
    layer = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(features)
    layer.weight.data[...] = np.linspace(0.5, 1.5, features)
    layer.bias.data[...] = np.linspace(-1, 1, features)
    layer.running_var.data[...] = np.linspace(0.5, 2, features)
    return layer.eval() if eval_mode else layer


# (id, layer factory, input shape)
LAYERS = [
    ("conv3x3", lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 8, 8)),
    ("conv3x3_stride2", lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), (2, 3, 9, 9)),
    ("conv1x1_stride2", lambda: nn.Conv2d(4, 6, 1, stride=2, bias=False), (2, 4, 8, 8)),
    ("conv_dilated", lambda: nn.Conv2d(2, 3, 3, padding=2, dilation=2), (1, 2, 7, 7)),
    ("conv_7x7_stride2_batch1", lambda: nn.Conv2d(3, 4, 7, stride=2, padding=3),
     (1, 3, 16, 16)),
    ("batchnorm2d_train", lambda: _bn(4), (3, 4, 5, 5)),
    ("batchnorm2d_eval", lambda: _bn(4, eval_mode=True), (3, 4, 5, 5)),
    ("batchnorm1d_train", lambda: _bn(6, dims=1), (5, 6)),
    ("batchnorm2d_no_affine", lambda: nn.BatchNorm2d(3, affine=False), (2, 3, 4, 4)),
    ("maxpool_3_2_1", lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 9, 9)),
    ("maxpool_2", lambda: nn.MaxPool2d(2), (2, 3, 8, 8)),
    ("avgpool_include_pad", lambda: nn.AvgPool2d(3, 2, 1), (2, 3, 9, 9)),
    ("avgpool_exclude_pad", lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     (2, 3, 9, 9)),
    ("adaptive_avgpool", lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 5)),
    ("linear", lambda: nn.Linear(7, 3), (4, 7)),
    ("relu", nn.ReLU, (3, 4, 5)),
    ("sigmoid", nn.Sigmoid, (3, 4, 5)),
    ("tanh", nn.Tanh, (3, 4, 5)),
    ("flatten", nn.Flatten, (2, 3, 4, 4)),
    ("dropout_eval", lambda: nn.Dropout(0.5).eval(), (3, 4)),
    ("conv_bn_relu_pool", lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), _bn(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3)), (2, 3, 8, 8)),
]


def _twin_models(factory, dtype=np.float64):
    with backend.default_dtype(dtype):
        minires.manual_seed(0)
        cpu = factory()
    cpu.to(dtype=dtype)
    return cpu, copy.deepcopy(cpu).to(backend.CUDA)


def _forward_backward(model, x, upstream, device):
    inputs = minires.tensor(x, requires_grad=True, device=device)
    out = model(inputs)
    out.backward(upstream)
    return out, inputs.grad


def _assert_models_agree(gpu_model, cpu_model, tol, what):
    gpu_params = dict(gpu_model.named_parameters())
    for name, p in cpu_model.named_parameters():
        q = gpu_params[name]
        assert (q.grad is None) == (p.grad is None), f"{what}: grad of {name}"
        if p.grad is not None:
            assert_twins(q.grad, p.grad, tol, f"{what}: grad of {name}")
    gpu_state = gpu_model.state_dict()
    for name, value in cpu_model.state_dict().items():
        np.testing.assert_allclose(gpu_state[name], value, rtol=tol,
                                   atol=tol * max(1.0, float(np.abs(value).max(initial=0))),
                                   err_msg=f"{what}: {name}")


@pytest.mark.parametrize("name, factory, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_forward_and_backward_on_gpu_match_cpu(name, factory, shape):
    cpu_model, gpu_model = _twin_models(factory)
    rng = np.random.default_rng(4)
    for step in range(2):  # twice: BatchNorm's running statistics move in between
        x = rng.standard_normal(shape) + 0.5
        cpu_model.zero_grad()
        gpu_model.zero_grad()
        cpu_x = minires.tensor(x, requires_grad=True)
        cpu_out = cpu_model(cpu_x)
        upstream = rng.standard_normal(cpu_out.shape)
        cpu_out.backward(upstream)
        gpu_out, gpu_grad = _forward_backward(gpu_model, x, upstream, backend.CUDA)
        assert_twins(gpu_out, cpu_out, what=f"{name} output, step {step}")
        assert_twins(gpu_grad, cpu_x.grad, what=f"{name} input grad, step {step}")
        _assert_models_agree(gpu_model, cpu_model, TOL, f"{name}, step {step}")


def test_dropout_on_gpu_draws_its_mask_there_seeded_by_manual_seed():
    x = minires.ones(64, 64, dtype=np.float64, device=backend.CUDA, requires_grad=True)
    minires.manual_seed(5)
    y = F.dropout(x, 0.25)
    assert y.device == backend.CUDA
    values = backend.to_numpy(y.data)
    kept = values != 0
    assert set(np.unique(values)) <= {0.0, 1 / 0.75}
    assert 0.65 < kept.mean() < 0.85
    y.backward(np.full((64, 64), 2.0))
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), 2.0 * values)
    minires.manual_seed(5)
    again = backend.to_numpy(F.dropout(x, 0.25).data)
    np.testing.assert_array_equal(again, values)


# ---------------------------------------------------------------------------- models

SMALL = {"widths": (4, 8, 8)}

MODELS = [
    ("resnet20", resnet20, (2, 3, 32, 32)),
    ("resnet20_shortcut_B", lambda: CifarResNet(20, shortcut="B", **SMALL), (2, 3, 16, 16)),
    ("plain20", lambda: plain20(**SMALL), (2, 3, 16, 16)),
    ("preact_resnet20", lambda: preact_resnet20(**SMALL), (2, 3, 16, 16)),
    ("resnet18_imagenet", lambda: resnet18(num_classes=5), (2, 3, 32, 32)),
]


@pytest.mark.parametrize("name, factory, shape", MODELS, ids=[c[0] for c in MODELS])
def test_model_forward_and_backward_on_gpu_match_cpu(name, factory, shape):
    cpu_model, gpu_model = _twin_models(factory)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape)
    labels = rng.integers(0, 5, size=shape[0])
    logits = {}
    for model, device in ((cpu_model, backend.CPU), (gpu_model, backend.CUDA)):
        model.train()
        logits[device] = model(minires.tensor(x, device=device))
        F.cross_entropy(logits[device], backend.to_device(labels, device)).backward()
    assert_twins(logits[backend.CUDA], logits[backend.CPU], MODEL_TOL, f"{name} logits")
    _assert_models_agree(gpu_model, cpu_model, MODEL_TOL, name)
    # Eval mode: the running statistics just updated normalise instead.
    for model in (cpu_model, gpu_model):
        model.eval()
    with minires.no_grad():
        assert_twins(gpu_model(minires.tensor(x, device=backend.CUDA)),
                     cpu_model(minires.tensor(x)), MODEL_TOL, f"{name} eval logits")


# ---------------------------------------------------------------------------- optimizers

OPTIMIZERS = {
    "sgd_momentum_wd": lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4),
    "sgd_nesterov": lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    "adam_wd": lambda ps: Adam(ps, lr=1e-3, weight_decay=1e-4),
}


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_training_steps_on_gpu_match_cpu(make):
    """Three steps of a small CIFAR ResNet: loss, gradients, weights, optimizer state."""
    cpu_model, gpu_model = _twin_models(lambda: resnet20(**SMALL))
    rng = np.random.default_rng(6)
    batches = [(rng.standard_normal((4, 3, 16, 16)), rng.integers(0, 10, size=4))
               for _ in range(3)]
    losses = {}
    optimizers = {}
    for model, device in ((cpu_model, backend.CPU), (gpu_model, backend.CUDA)):
        optimizer = optimizers[device] = make(list(model.parameters()))
        losses[device] = []
        for x, y in batches:
            loss = F.cross_entropy(model(minires.tensor(x, device=device)),
                                   backend.to_device(y, device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[device].append(loss.item())
    np.testing.assert_allclose(losses[backend.CUDA], losses[backend.CPU], rtol=MODEL_TOL)
    _assert_models_agree(gpu_model, cpu_model, MODEL_TOL, "after 3 steps")
    cpu_state = optimizers[backend.CPU].state_dict()["state"]
    gpu_state = optimizers[backend.CUDA].state_dict()["state"]
    for index, values in cpu_state.items():
        for key, value in values.items():
            np.testing.assert_allclose(gpu_state[index][key], value, rtol=MODEL_TOL,
                                       atol=MODEL_TOL * max(1.0, float(np.max(np.abs(value)))),
                                       err_msg=f"optimizer state {index}.{key}")
