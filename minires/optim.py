"""Optimizers (SGD, Adam) and learning-rate schedulers, with PyTorch's names and formulas.

An optimizer owns a list of parameters and, on every ``step()``, moves each one a little
against its gradient.  Training code looks exactly as in PyTorch::

    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for x, y in loader:
        optimizer.zero_grad()           # forget last step's gradients (.grad = None)
        loss_fn(model(x), y).backward()  # fill every p.grad
        optimizer.step()                # update every p.data in place

**Plain gradient descent** is ``p -= lr * grad``.  The learning rate ``lr`` is the step
size: too large and the loss diverges, too small and training crawls.

**Momentum** keeps a running "velocity" per parameter, ``buf = momentum * buf + grad``,
and steps along ``buf`` instead of the raw gradient.  Gradients that agree from step to
step add up (with momentum 0.9, a steady gradient gives a step about 10x larger), while
noisy components that flip sign cancel out: the path through a narrow valley zig-zags
less and moves faster along its floor.  *Nesterov* momentum looks one step ahead:
it steps along ``grad + momentum * buf``.

**Weight decay as L2 regularisation.**  Adding ``wd/2 * ||p||^2`` to the loss adds
``wd * p`` to the gradient, so each step also shrinks every weight a little towards zero
(``p -= lr * wd * p``): the net prefers small weights, which generalise better.  Both SGD
and Adam here do exactly this (add ``wd * p`` to the gradient), as PyTorch's do; the
paper's CIFAR recipe uses ``weight_decay=1e-4``.

**Why change the learning rate during training** (:class:`MultiStepLR` and friends).
A large rate makes fast progress early but, near a minimum, keeps bouncing around it
at the noise level of the mini-batch gradients; dividing it by 10 later lets the
weights settle, and the training error visibly drops at each division ("step decay").
:class:`CosineAnnealingLR` lowers the rate smoothly instead.  **Warm-up** does the
opposite at the very start: a freshly initialised deep network can have huge gradients,
and a full-size first step can throw it somewhere it never recovers from.  The ResNet
paper trains its 110-layer CIFAR net at 0.01 for about 400 iterations before going to
0.1.  :class:`SequentialLR` chains a warm-up scheduler and a decay scheduler.

The paper's CIFAR-10 recipe (SGD, lr 0.1, momentum 0.9, weight decay 1e-4, lr divided by
10 at 32k and 48k iterations, 64k in all, warm-up at 0.01 for 400 iterations), stepping
the scheduler once per *iteration*::

    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    warmup = ConstantLR(optimizer, factor=0.1, total_iters=400)          # 0.01 first
    decay = MultiStepLR(optimizer, milestones=[32000 - 400, 48000 - 400])  # see below
    scheduler = SequentialLR(optimizer, [warmup, decay], milestones=[400])
    for iteration in range(64000):
        ...                            # zero_grad, forward, backward
        optimizer.step()
        scheduler.step()

As in PyTorch, a scheduler inside :class:`SequentialLR` counts its steps from the moment
it takes over, hence ``32000 - 400``.  Without warm-up it is simply
``MultiStepLR(optimizer, milestones=[32000, 48000], gamma=0.1)``.

Implementation notes.  Updates are plain array arithmetic on ``p.data`` (no autograd
graph is built) and happen in place, so a parameter keeps its array, device and dtype
(float32 stays float32).  Parameters whose ``.grad`` is ``None`` are skipped.  Unlike
PyTorch's "chainable" schedulers, each scheduler here computes the learning rate from a
closed-form formula of its step count, so the formula in its docstring is the code.
"""

from __future__ import annotations

import bisect
import copy
import math

import numpy as np

from minires import backend
from minires.autograd import Tensor

# ---------------------------------------------------------------------------- optimizers


def _is_array(value) -> bool:
    """True for a NumPy or CuPy array (state such as momentum buffers), not a number."""
    return isinstance(value, np.ndarray) or backend.device_of(value) == backend.CUDA


class Optimizer:
    """Base class: holds parameter groups and per-parameter state; subclasses implement
    :meth:`step`.

    Args:
        params: an iterable of Parameters (Tensors), or of dicts ``{"params": [...],
            "lr": ..., ...}`` ("parameter groups"), each of which may override any
            hyper-parameter, e.g. a smaller ``lr`` for a pretrained backbone.
        defaults: the hyper-parameters a group gets when it does not set them.

    Attributes:
        param_groups: a list of dicts, each with a ``"params"`` list and its
            hyper-parameters; schedulers change ``group["lr"]`` here.
        state: per-parameter state (``optimizer.state[p]``: e.g. the momentum buffer).
    """

    def __init__(self, params, defaults: dict):
        if isinstance(params, Tensor):
            raise TypeError(
                "params should be an iterable of Tensors or of dicts, but got a single "
                "Tensor; wrap it in a list: [p]"
            )
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict = {}  # Parameter -> dict of state (arrays, step counts)
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters, filling missing hyper-parameters from the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group)}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p)}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed by an op)")
        existing = {id(p) for group in self.param_groups for p in group["params"]}
        if len({id(p) for p in params}) != len(params) or existing & {id(p) for p in params}:
            raise ValueError("some parameters appear more than once in the parameter groups")
        group = dict(self.defaults)
        group.update(param_group)
        group["params"] = params
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def _check_hyperparameters(self, group: dict) -> None:
        """Raise ValueError for invalid hyper-parameters in ``group`` (subclasses)."""
        if group["lr"] < 0:
            raise ValueError(f"invalid learning rate: {group['lr']} (must be >= 0)")

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``p.grad = None``), before the next backward."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient (implemented by subclasses)."""
        raise NotImplementedError

    @staticmethod
    def _gradient(p: Tensor):
        """The gradient array of ``p``, checked, in ``p``'s dtype (``None`` if no grad)."""
        if p.grad is None:
            return None
        grad = p.grad.data if isinstance(p.grad, Tensor) else p.grad
        backend.get_array_module(p.data, grad)  # raises if on different devices
        if grad.shape != p.data.shape:
            raise ValueError(
                f"gradient shape {tuple(grad.shape)} does not match parameter shape "
                f"{tuple(p.data.shape)}"
            )
        return grad.astype(p.data.dtype, copy=False)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """A checkpointable snapshot: ``{"state": {index: {...}}, "param_groups": [...]}``.

        Parameters are named by their index, counting through the groups in order; each
        group lists its hyper-parameters and the indices of its parameters.  Arrays are
        copied to NumPy, so the snapshot does not change as training goes on and can be
        loaded on either device.
        """
        index_of = {}
        groups = []
        for group in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            saved["params"] = []
            for p in group["params"]:
                index_of[id(p)] = len(index_of)
                saved["params"].append(index_of[id(p)])
            groups.append(saved)
        state = {}
        for p, p_state in self.state.items():
            state[index_of[id(p)]] = {
                k: np.array(backend.to_numpy(v)) if _is_array(v) else copy.deepcopy(v)
                for k, v in p_state.items()
            }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a snapshot from :meth:`state_dict` into this optimizer.

        The groups must match (same number of groups, same number of parameters in
        each, state arrays shaped like their parameters), otherwise ValueError says what
        differs.  Arrays are copied onto each parameter's device and dtype.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(
                "not an optimizer state dict: expected the keys 'state' and 'param_groups'"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"number of parameter groups differs: loaded state dict has "
                f"{len(saved_groups)}, this optimizer has {len(self.param_groups)}"
            )
        params = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"parameter group {i}: number of parameters differs: loaded state dict "
                    f"has {len(saved['params'])}, this optimizer has {len(group['params'])}"
                )
            params.extend(group["params"])
        new_state = {}
        for index, p_state in state_dict["state"].items():
            if not 0 <= index < len(params):
                raise ValueError(
                    f"loaded state dict has state for parameter {index}, but this optimizer "
                    f"has only {len(params)} parameters"
                )
            p = params[index]
            restored = {}
            for key, value in p_state.items():
                if _is_array(value):  # e.g. a momentum buffer: check it, then move it
                    if tuple(value.shape) != p.shape:
                        raise ValueError(
                            f"parameter {index}: state '{key}' has shape "
                            f"{tuple(value.shape)}, but the parameter has shape {p.shape}"
                        )
                    value = backend.to_device(value, p.device).astype(p.dtype, copy=True)
                else:
                    value = copy.deepcopy(value)
                restored[key] = value
            new_state[p] = restored
        # Everything checked: only now change this optimizer.
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            hyper = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            group.update(hyper)
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    PyTorch's exact formulas, for each parameter ``p`` with gradient ``grad``::

        g = grad + weight_decay * p
        if momentum != 0:
            buf = g                                          (first step)
            buf = momentum * buf + (1 - dampening) * g       (later steps)
            g = g + momentum * buf   if nesterov   else   buf
        p = p - lr * g

    Args:
        params: parameters, or parameter groups (see :class:`Optimizer`).
        lr: learning rate (>= 0).
        momentum: momentum factor (0 = plain SGD).
        dampening: scales the gradient's share of the momentum buffer by (1 - dampening).
        weight_decay: L2 penalty factor.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).

    State per parameter: ``"momentum_buffer"`` (when momentum != 0).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict) -> None:
        super()._check_hyperparameters(group)
        if group["momentum"] < 0:
            raise ValueError(f"invalid momentum: {group['momentum']} (must be >= 0)")
        if group["weight_decay"] < 0:
            raise ValueError(f"invalid weight_decay: {group['weight_decay']} (must be >= 0)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def step(self) -> None:
        for group in self.param_groups:
            # float() keeps NumPy scalars from promoting float32 arrays to float64.
            lr, momentum = float(group["lr"]), float(group["momentum"])
            dampening, weight_decay = float(group["dampening"]), float(group["weight_decay"])
            for p in group["params"]:
                g = self._gradient(p)
                if g is None:
                    continue
                xp = backend.get_array_module(p.data)
                if weight_decay != 0:
                    g = g + weight_decay * p.data  # a new array: p.grad is left alone
                if momentum != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:  # a copy, kept as an array even for a 0-d parameter
                        buf = state["momentum_buffer"] = xp.array(g, dtype=p.data.dtype)
                    else:
                        buf *= momentum  # in place: the buffer is this parameter's state
                        buf += (1 - dampening) * g
                    g = g + momentum * buf if group["nesterov"] else buf
                p.data -= lr * g


class Adam(Optimizer):
    """Adam: momentum on the gradient plus a per-weight step size from its recent scale.

    PyTorch's formulas, with ``t`` the step count of the parameter (1, 2, ...)::

        g = grad + weight_decay * p                  (L2 weight decay, as in PyTorch's Adam)
        m = beta1 * m + (1 - beta1) * g              (running mean of gradients)
        v = beta2 * v + (1 - beta2) * g * g          (running mean of squared gradients)
        m_hat = m / (1 - beta1 ** t)                 (bias correction: m and v start at 0)
        v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    Args:
        params: parameters, or parameter groups (see :class:`Optimizer`).
        lr: learning rate (>= 0).
        betas: decay rates ``(beta1, beta2)`` of the two running means, each in [0, 1).
        eps: added to the denominator for numerical stability.
        weight_decay: L2 penalty factor.

    State per parameter: ``"step"`` (int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict) -> None:
        super()._check_hyperparameters(group)
        beta1, beta2 = group["betas"]
        for i, beta in enumerate((beta1, beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"invalid beta parameter at index {i}: {beta} (need [0, 1))")
        if group["eps"] < 0:
            raise ValueError(f"invalid eps: {group['eps']} (must be >= 0)")
        if group["weight_decay"] < 0:
            raise ValueError(f"invalid weight_decay: {group['weight_decay']} (must be >= 0)")

    def step(self) -> None:
        for group in self.param_groups:
            lr, eps = float(group["lr"]), float(group["eps"])
            weight_decay = float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            for p in group["params"]:
                g = self._gradient(p)
                if g is None:
                    continue
                xp = backend.get_array_module(p.data)
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                if weight_decay != 0:
                    g = g + weight_decay * p.data
                m *= beta1  # in place: m and v are this parameter's state
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                p.data -= lr * m_hat / (xp.sqrt(v_hat) + eps)


# ---------------------------------------------------------------------------- schedulers


class LRScheduler:
    """Base class: sets ``group["lr"]`` of every group from a formula of the step count.

    Call :meth:`step` once per epoch, or once per iteration with milestones counted in
    iterations; the counter is ``last_epoch`` (PyTorch's name, whichever you count).
    Creating a scheduler already applies the learning rate for step 0.  Each group's
    starting rate is remembered as ``group["initial_lr"]`` (``base_lrs``).
    Subclasses implement :meth:`get_lr`.
    """

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def get_lr(self) -> list:
        """The learning rate of each group at step ``self.last_epoch``."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance the step count by one and set the groups' learning rates."""
        self.last_epoch += 1
        self._set_lrs(self.get_lr())

    def _set_lrs(self, lrs: list) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list:
        """The learning rates this scheduler set last (one per group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Everything but the optimizer (save the optimizer's own state_dict too)."""
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict`, and re-apply the saved learning rates to the
        optimizer (so it does not matter which of the two you load first)."""
        unknown = set(state_dict) - set(vars(self))
        if unknown:
            raise ValueError(f"unexpected keys in scheduler state dict: {sorted(unknown)}")
        if len(state_dict["_last_lr"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"scheduler state dict has {len(state_dict['_last_lr'])} learning rates, "
                f"but the optimizer has {len(self.optimizer.param_groups)} groups"
            )
        self.__dict__.update(copy.deepcopy(state_dict))
        self._set_lrs(self._last_lr)


class MultiStepLR(LRScheduler):
    """Step decay: multiply the rate by ``gamma`` at each milestone.

    ``lr(t) = base_lr * gamma ** (number of milestones <= t)``

    ``MultiStepLR(opt, milestones=[32000, 48000], gamma=0.1)``, stepped every iteration,
    is the paper's CIFAR schedule: 0.1, then 0.01 from iteration 32k, 0.001 from 48k.
    """

    def __init__(self, optimizer: Optimizer, milestones, gamma: float = 0.1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self) -> list:
        passed = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base_lr * self.gamma**passed for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine decay from the base rate to ``eta_min`` over ``T_max`` steps.

    ``lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``

    (Past ``T_max`` the cosine carries on and the rate rises again, as in PyTorch.)
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        if T_max <= 0:
            raise ValueError(f"T_max must be a positive number of steps, got {T_max}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer)

    def get_lr(self) -> list:
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear warm-up: the factor on the rate goes from ``start_factor`` to ``end_factor``
    over ``total_iters`` steps, then stays at ``end_factor``.

    ``lr(t) = base_lr * (start_factor + (end_factor - start_factor) * min(t, total_iters)
    / total_iters)``
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5):
        if not 0 < start_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"end_factor must be in [0, 1], got {end_factor}")
        if total_iters <= 0:
            raise ValueError(f"total_iters must be a positive number of steps, got {total_iters}")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer)

    def get_lr(self) -> list:
        progress = min(self.last_epoch, self.total_iters) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base_lr * factor for base_lr in self.base_lrs]


class ConstantLR(LRScheduler):
    """Constant warm-up: the rate is ``factor * base_lr`` for the first ``total_iters``
    steps, then ``base_lr``.

    ``lr(t) = base_lr * (factor if t < total_iters else 1)``

    ``ConstantLR(opt, factor=0.1, total_iters=400)`` with ``lr=0.1`` is the paper's
    warm-up for ResNet-110: 0.01 for 400 iterations, then 0.1.
    """

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5):
        if not 0 <= factor <= 1:
            raise ValueError(f"factor must be in [0, 1], got {factor}")
        if total_iters <= 0:
            raise ValueError(f"total_iters must be a positive number of steps, got {total_iters}")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer)

    def get_lr(self) -> list:
        factor = self.factor if self.last_epoch < self.total_iters else 1.0
        return [base_lr * factor for base_lr in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at ``milestones`` (as in PyTorch).

    ``schedulers[i]`` is in charge from step ``milestones[i - 1]`` to ``milestones[i]``;
    at each switch the next scheduler starts from its own step 0 (so its milestones are
    counted from the switch).  Typical use: a warm-up, then a decay::

        warmup = LinearLR(opt, start_factor=0.1, total_iters=5)
        decay = MultiStepLR(opt, milestones=[95, 145])   # epochs 100, 150 overall
        scheduler = SequentialLR(opt, [warmup, decay], milestones=[5])
    """

    def __init__(self, optimizer: Optimizer, schedulers: list, milestones: list):
        schedulers, milestones = list(schedulers), [int(m) for m in milestones]
        if not schedulers:
            raise ValueError("SequentialLR needs at least one scheduler")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR needs one milestone fewer than schedulers: got "
                f"{len(schedulers)} schedulers and {len(milestones)} milestones"
            )
        if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ValueError(f"milestones must be strictly increasing, got {milestones}")
        for i, scheduler in enumerate(schedulers):
            if scheduler.optimizer is not optimizer:
                raise ValueError(
                    f"scheduler {i} belongs to a different optimizer than SequentialLR's"
                )
        self.optimizer = optimizer
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = 0
        # Each scheduler set the rate for its own step 0 when it was created; start over
        # with the first one (the others start when their milestone comes).
        for scheduler in schedulers:
            scheduler.last_epoch = -1
        schedulers[0].step()
        self._last_lr = schedulers[0].get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler.last_epoch = -1  # a switch: the next scheduler starts at its step 0
        scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict:
        return {
            "last_epoch": self.last_epoch,
            "_milestones": list(self._milestones),
            "_last_lr": list(self._last_lr),
            "_schedulers": [scheduler.state_dict() for scheduler in self._schedulers],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict["_schedulers"]
        if len(saved) != len(self._schedulers):
            raise ValueError(
                f"SequentialLR state dict has {len(saved)} schedulers, but this one has "
                f"{len(self._schedulers)}"
            )
        for scheduler, scheduler_state in zip(self._schedulers, saved, strict=True):
            scheduler.load_state_dict(scheduler_state)
        self.last_epoch = state_dict["last_epoch"]
        self._milestones = list(state_dict["_milestones"])
        self._set_lrs(list(state_dict["_last_lr"]))
