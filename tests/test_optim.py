"""Optimizers and learning-rate schedulers: cross-checked against torch.optim step by step."""

import math

import numpy as np
import pytest

from minires import backend
from minires.autograd import Tensor
from minires.nn import Parameter
from minires.optim import (
    SGD,
    Adam,
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    MultiStepLR,
    SequentialLR,
)

SHAPES = [(3, 4), (5,), ()]  # a matrix, a vector (a bias) and a scalar parameter


def make_params(rng, dtype=np.float64):
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def gradient_sequence(rng, steps, dtype=np.float64):
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]


def run(optimizer, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = Tensor(g)
        optimizer.step()


def assert_matches_torch(torch, make_ours, make_theirs, rng, steps=20):
    """Same parameters, same gradients: every parameter matches after every step."""
    params = make_params(rng)
    torch_params = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    ours, theirs = make_ours(params), make_theirs(torch_params)
    for step_grads in gradient_sequence(rng, steps):
        for p, tp, g in zip(params, torch_params, step_grads, strict=True):
            p.grad = Tensor(g)
            tp.grad = torch.tensor(g)
        ours.step()
        theirs.step()
        for p, tp in zip(params, torch_params, strict=True):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------- SGD, Adam

SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=1e-2),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "paper_recipe": dict(lr=0.1, momentum=0.9, weight_decay=1e-4),
    "everything": dict(lr=0.03, momentum=0.7, weight_decay=5e-3, nesterov=True),
}


@pytest.mark.parametrize("config", SGD_CONFIGS.values(), ids=SGD_CONFIGS.keys())
def test_sgd_matches_torch(torch, rng, config):
    assert_matches_torch(
        torch, lambda ps: SGD(ps, **config), lambda ps: torch.optim.SGD(ps, **config), rng
    )


ADAM_CONFIGS = {
    "defaults": dict(),
    "weight_decay": dict(lr=1e-2, weight_decay=1e-2),
    "betas_eps": dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
}


@pytest.mark.parametrize("config", ADAM_CONFIGS.values(), ids=ADAM_CONFIGS.keys())
def test_adam_matches_torch(torch, rng, config):
    assert_matches_torch(
        torch, lambda ps: Adam(ps, **config), lambda ps: torch.optim.Adam(ps, **config), rng
    )


def test_param_groups_with_different_hyperparameters_match_torch(torch, rng):
    def groups(ps):
        return [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.01, "momentum": 0.5}]

    assert_matches_torch(
        torch,
        lambda ps: SGD(groups(ps), lr=0.1, momentum=0.9, weight_decay=1e-3),
        lambda ps: torch.optim.SGD(groups(ps), lr=0.1, momentum=0.9, weight_decay=1e-3),
        rng,
    )
    assert_matches_torch(
        torch,
        lambda ps: Adam(groups(ps)[:1] + [{"params": ps[1:], "lr": 1e-2}]),
        lambda ps: torch.optim.Adam(groups(ps)[:1] + [{"params": ps[1:], "lr": 1e-2}]),
        rng,
    )


def test_param_groups_keep_their_own_hyperparameters(rng):
    a, b = make_params(rng)[:2]
    optimizer = SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]
    assert [g["momentum"] for g in optimizer.param_groups] == [0.9, 0.9]
    assert optimizer.param_groups[0]["params"] == [a]


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda ps: Adam(ps, weight_decay=0.1)], ids=["sgd", "adam"])
def test_parameters_without_grad_are_untouched(rng, make):
    params = make_params(rng)
    frozen = params[1]
    before = frozen.data.copy()
    optimizer = make(params)
    for step_grads in gradient_sequence(rng, 5):
        params[0].grad, params[2].grad = Tensor(step_grads[0]), Tensor(step_grads[2])
        optimizer.step()
    np.testing.assert_array_equal(frozen.data, before)
    assert frozen not in optimizer.state
    assert params[0] in optimizer.state


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda ps: Adam(ps, weight_decay=0.1)], ids=["sgd", "adam"])
def test_updates_are_in_place_and_float32_stays_float32(rng, make):
    params = make_params(rng, np.float32)
    arrays = [p.data for p in params]
    optimizer = make(params)
    grads = gradient_sequence(rng, 3, np.float64)  # even float64 gradients
    saved = [g.copy() for g in grads[-1]]
    run(optimizer, params, grads)
    for p, array in zip(params, arrays, strict=True):
        assert p.data is array, "the update must be in place, on the same array"
        assert p.dtype == np.float32
        for value in optimizer.state[p].values():
            assert not hasattr(value, "dtype") or value.dtype == np.float32
    for p, g in zip(params, saved, strict=True):  # the gradients were not modified
        np.testing.assert_array_equal(p.grad.data, g)


def test_zero_grad_sets_grad_to_none(rng):
    params = make_params(rng)
    for p in params:
        p.grad = Tensor(np.ones(p.shape))
    SGD(params, lr=0.1).zero_grad()
    assert all(p.grad is None for p in params)


def test_sgd_minimises_a_quadratic():
    # No torch: loss = sum((w - target)^2) through autograd; the minimum is w = target.
    target = np.array([1.0, -2.0, 3.0])
    for optimizer_class, kwargs in [(SGD, dict(lr=0.1, momentum=0.9)), (Adam, dict(lr=0.1))]:
        w = Parameter(np.zeros(3))
        optimizer = optimizer_class([w], **kwargs)
        for _ in range(300):
            optimizer.zero_grad()
            loss = ((w - Tensor(target)) ** 2).sum()
            loss.backward()
            optimizer.step()
        np.testing.assert_allclose(w.data, target, atol=1e-3)


def test_plain_sgd_step_by_hand():
    w = Parameter(np.array([1.0, 2.0]))
    w.grad = Tensor(np.array([0.5, -1.0]))
    SGD([w], lr=0.1, weight_decay=0.2).step()  # w - 0.1 * (grad + 0.2 * w)
    np.testing.assert_allclose(w.data, [1.0 - 0.1 * 0.7, 2.0 - 0.1 * (-0.6)])


def test_invalid_hyperparameters_raise(rng):
    params = make_params(rng)
    with pytest.raises(ValueError, match="learning rate"):
        SGD(params, lr=-0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(params, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum"):
        SGD(params, lr=0.1, momentum=-0.9)
    with pytest.raises(ValueError, match="learning rate"):
        SGD([{"params": params[:1]}, {"params": params[1:], "lr": -1.0}], lr=0.1)
    with pytest.raises(ValueError, match="beta"):
        Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        Adam(params, eps=-1.0)
    with pytest.raises(TypeError, match="single Tensor"):
        SGD(params[0], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([{"params": params[:2]}, {"params": params[1:]}], lr=0.1)


def test_gradient_of_wrong_shape_raises(rng):
    w = make_params(rng)[0]
    w.grad = Tensor(np.ones((4, 3)))
    with pytest.raises(ValueError, match="does not match parameter shape"):
        SGD([w], lr=0.1).step()


# ---------------------------------------------------------------------------- state dicts

STATEFUL = {
    "sgd_nesterov": lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True),
    "sgd_dampening": lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.5),
    "adam": lambda ps: Adam(ps, lr=1e-2, weight_decay=1e-3),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("make", STATEFUL.values(), ids=STATEFUL.keys())
def test_state_dict_round_trip_is_exact(rng, make, dtype):
    start = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = gradient_sequence(rng, 20, dtype)

    uninterrupted = [Parameter(a.copy()) for a in start]
    run(make(uninterrupted), uninterrupted, grads)

    params = [Parameter(a.copy()) for a in start]
    first = make(params)
    run(first, params, grads[:10])
    saved = first.state_dict()
    run(first, params, grads[10:])  # keep training: the snapshot must not change

    params = [Parameter(a.copy()) for a in start]
    run(make(params), params, grads[:10])
    second = make(params)  # a fresh optimizer, e.g. after restarting the program
    second.load_state_dict(saved)
    run(second, params, grads[10:])

    for p, q in zip(params, uninterrupted, strict=True):
        np.testing.assert_array_equal(p.data, q.data)
        assert p.dtype == dtype
        for value in second.state[p].values():
            assert not hasattr(value, "dtype") or value.dtype == dtype


def test_state_dict_layout_and_hyperparameters(rng):
    params = make_params(rng)
    optimizer = SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.01}], lr=0.1,
                    momentum=0.9)
    run(optimizer, params, gradient_sequence(rng, 2))
    optimizer.param_groups[1]["lr"] = 0.005  # e.g. changed by a scheduler
    saved = optimizer.state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2]]
    assert sorted(saved["state"]) == [0, 1, 2]
    assert isinstance(saved["state"][0]["momentum_buffer"], np.ndarray)

    fresh = SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.01}], lr=0.1)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[1]["lr"] == 0.005
    assert fresh.param_groups[0]["momentum"] == 0.9
    assert fresh.param_groups[1]["params"] == params[2:]
    buffer = fresh.state[params[0]]["momentum_buffer"]
    np.testing.assert_array_equal(buffer, saved["state"][0]["momentum_buffer"])
    assert buffer is not saved["state"][0]["momentum_buffer"]


def test_mismatched_state_dict_raises(rng):
    params = make_params(rng)
    optimizer = SGD(params, lr=0.1, momentum=0.9)
    run(optimizer, params, gradient_sequence(rng, 1))
    saved = optimizer.state_dict()

    with pytest.raises(ValueError, match="number of parameter groups.*has 1, this optimizer has 2"):
        two_groups = SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1, momentum=0.9)
        two_groups.load_state_dict(saved)
    with pytest.raises(ValueError, match="group 0: number of parameters.*3, this optimizer has 2"):
        SGD(params[:2], lr=0.1, momentum=0.9).load_state_dict(saved)
    reshaped = [Parameter(np.zeros((4, 3))), *params[1:]]
    with pytest.raises(ValueError, match=r"parameter 0.*momentum_buffer.*\(3, 4\).*\(4, 3\)"):
        SGD(reshaped, lr=0.1, momentum=0.9).load_state_dict(saved)
    with pytest.raises(ValueError, match="not an optimizer state dict"):
        SGD(params, lr=0.1).load_state_dict({"param_groups": saved["param_groups"]})

    untouched = SGD(reshaped, lr=0.5, momentum=0.9)
    with pytest.raises(ValueError):
        untouched.load_state_dict(saved)
    assert untouched.param_groups[0]["lr"] == 0.5 and not untouched.state


@pytest.mark.skipif(not backend.is_cuda_available(), reason="needs CuPy and a GPU")
@pytest.mark.parametrize("make", STATEFUL.values(), ids=STATEFUL.keys())
def test_cuda_updates_and_state_dict_match_cpu(rng, make):
    start = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = gradient_sequence(rng, 6, np.float32)
    cpu = [Parameter(a.copy()) for a in start]
    run(make(cpu), cpu, grads)

    gpu = [Parameter(backend.to_device(a, "cuda")) for a in start]
    first = make(gpu)
    run(first, gpu, [[backend.to_device(g, "cuda") for g in gs] for gs in grads[:3]])
    saved = first.state_dict()  # NumPy arrays: loadable on either device
    second = make(gpu)
    second.load_state_dict(saved)
    run(second, gpu, [[backend.to_device(g, "cuda") for g in gs] for gs in grads[3:]])
    for p, q in zip(gpu, cpu, strict=True):
        assert p.device == "cuda" and p.dtype == np.float32
        np.testing.assert_allclose(backend.to_numpy(p.data), q.data, rtol=1e-5, atol=1e-6)
        for value in second.state[p].values():
            assert not hasattr(value, "dtype") or backend.device_of(value) == "cuda"


# ---------------------------------------------------------------------------- schedulers

STEPS = 30

SCHEDULERS = {
    "multistep": lambda opt, lr: lr.MultiStepLR(opt, milestones=[8, 15, 15, 25], gamma=0.3),
    "cosine": lambda opt, lr: lr.CosineAnnealingLR(opt, T_max=12, eta_min=1e-3),
    "cosine_to_zero": lambda opt, lr: lr.CosineAnnealingLR(opt, T_max=STEPS),
    "linear": lambda opt, lr: lr.LinearLR(opt, start_factor=0.1, end_factor=0.9, total_iters=7),
    "constant": lambda opt, lr: lr.ConstantLR(opt, factor=0.1, total_iters=4),
    "warmup_then_steps": lambda opt, lr: lr.SequentialLR(
        opt,
        [lr.LinearLR(opt, start_factor=0.1, total_iters=5), lr.MultiStepLR(opt, [10, 20])],
        milestones=[5],
    ),
    "three_phases": lambda opt, lr: lr.SequentialLR(
        opt,
        [
            lr.ConstantLR(opt, factor=0.1, total_iters=4),
            lr.MultiStepLR(opt, [3], gamma=0.5),
            lr.CosineAnnealingLR(opt, T_max=10, eta_min=1e-4),
        ],
        milestones=[4, 12],
    ),
}


class _Ours:
    """Lets one scheduler factory build both ours and torch's (``lr.MultiStepLR``)."""

    MultiStepLR, CosineAnnealingLR, LinearLR = MultiStepLR, CosineAnnealingLR, LinearLR
    ConstantLR, SequentialLR = ConstantLR, SequentialLR


def two_group_sgd(params):
    return SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.1,
               momentum=0.9)


def lr_sequence(optimizer, scheduler, steps):
    """The groups' learning rates for ``steps`` steps, checking get_last_lr on the way."""
    lrs = []
    for _ in range(steps):
        group_lrs = [group["lr"] for group in optimizer.param_groups]
        assert scheduler.get_last_lr() == group_lrs
        lrs.append(group_lrs)
        optimizer.step()
        scheduler.step()
    return np.array(lrs)


@pytest.mark.parametrize("make", SCHEDULERS.values(), ids=SCHEDULERS.keys())
def test_scheduler_matches_torch(torch, rng, make):
    params = make_params(rng)
    optimizer = two_group_sgd(params)
    ours = lr_sequence(optimizer, make(optimizer, _Ours), STEPS)

    torch_params = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    groups = [{"params": torch_params[:1]}, {"params": torch_params[1:], "lr": 0.02}]
    torch_optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    theirs = lr_sequence(torch_optimizer, make(torch_optimizer, torch.optim.lr_scheduler), STEPS)

    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("make", SCHEDULERS.values(), ids=SCHEDULERS.keys())
def test_scheduler_state_dict_round_trip(rng, make):
    params = make_params(rng)
    optimizer = two_group_sgd(params)
    uninterrupted = lr_sequence(optimizer, make(optimizer, _Ours), STEPS)

    optimizer = two_group_sgd(params)
    scheduler = make(optimizer, _Ours)
    first_half = lr_sequence(optimizer, scheduler, 10)
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()

    optimizer = two_group_sgd(params)  # fresh objects, as after a restart
    scheduler = make(optimizer, _Ours)
    scheduler.load_state_dict(saved_scheduler)
    optimizer.load_state_dict(saved_optimizer)
    second_half = lr_sequence(optimizer, scheduler, STEPS - 10)
    assert len(second_half) == STEPS - 10
    np.testing.assert_array_equal(np.concatenate([first_half, second_half]), uninterrupted)


def test_scheduler_closed_forms():
    w = Parameter(np.zeros(2))
    cosine = CosineAnnealingLR(SGD([w], lr=0.1), T_max=10, eta_min=0.001)
    for t in range(1, 15):
        cosine.step()
        expected = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 10)) / 2
        assert cosine.get_last_lr() == [pytest.approx(expected, rel=1e-15)]
    linear = LinearLR(SGD([w], lr=0.1), start_factor=0.25, total_iters=4)
    lrs = [linear.get_last_lr()[0]]
    for _ in range(6):
        linear.step()
        lrs.append(linear.get_last_lr()[0])
    np.testing.assert_allclose(lrs, [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1, 0.1])


def test_paper_cifar_recipe_stepped_per_iteration():
    # SGD 0.1 / momentum 0.9 / wd 1e-4; 0.01 for the first 400 iterations (ResNet-110);
    # lr / 10 at iterations 32k and 48k; 64k iterations in all.
    w = Parameter(np.zeros(2))
    optimizer = SGD([w], lr=0.1, momentum=0.9, weight_decay=1e-4)
    warmup = ConstantLR(optimizer, factor=0.1, total_iters=400)
    decay = MultiStepLR(optimizer, milestones=[32000 - 400, 48000 - 400], gamma=0.1)
    scheduler = SequentialLR(optimizer, [warmup, decay], milestones=[400])
    lrs = []
    for _ in range(64000):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    lrs = np.array(lrs)
    expected = np.full(64000, 0.1)
    expected[:400] = 0.01
    expected[32000:48000] = 0.1 * 0.1
    expected[48000:] = 0.1 * 0.1 * 0.1
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)

    # Without warm-up (ResNet-20 to 56): MultiStepLR alone, milestones in iterations.
    optimizer = SGD([w], lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = MultiStepLR(optimizer, milestones=[32000, 48000])
    scheduler.last_epoch = 31998
    scheduler.step()
    assert scheduler.get_last_lr() == [0.1]
    scheduler.step()
    assert scheduler.get_last_lr() == [pytest.approx(0.01, rel=1e-15)]


def test_scheduler_drives_the_optimizer_step():
    w = Parameter(np.array([1.0]))
    optimizer = SGD([w], lr=1.0)
    scheduler = MultiStepLR(optimizer, milestones=[1], gamma=0.5)
    for expected in [1.0 - 1.0, 0.0 - 0.5]:
        w.grad = Tensor(np.array([1.0]))
        optimizer.step()
        scheduler.step()
        np.testing.assert_allclose(w.data, [expected])


def test_invalid_scheduler_arguments_raise(rng):
    optimizer = SGD(make_params(rng), lr=0.1)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(optimizer, T_max=0)
    with pytest.raises(ValueError, match="start_factor"):
        LinearLR(optimizer, start_factor=0.0)
    with pytest.raises(ValueError, match="one milestone fewer"):
        SequentialLR(optimizer, [ConstantLR(optimizer), MultiStepLR(optimizer, [5])], [])
    other = SGD(make_params(rng), lr=0.1)
    with pytest.raises(ValueError, match="different optimizer"):
        SequentialLR(optimizer, [ConstantLR(optimizer), MultiStepLR(other, [5])], [3])
    with pytest.raises(TypeError, match="not an Optimizer"):
        MultiStepLR(object(), [5])
