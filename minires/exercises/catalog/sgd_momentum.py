"""One SGD step with momentum and (L2) weight decay, PyTorch's formulas; the reference is
minires.optim.SGD itself."""

import numpy as np

from minires.autograd import Tensor
from minires.exercises import Case
from minires.optim import SGD

NAME = "sgd_momentum"
TITLE = "SGD step with momentum and weight decay (PyTorch's formulas)"
ORDER = 100
STUB = "sgd_momentum.py"
FUNCTION = "sgd_momentum_step"
OUTPUTS = ("param", "momentum_buffer")


def reference(param, grad, momentum_buffer, lr, momentum, weight_decay):
    p = Tensor(param.copy(), requires_grad=True)
    p.grad = Tensor(grad.copy())
    optimizer = SGD([p], lr=lr, momentum=momentum, weight_decay=weight_decay)
    if momentum_buffer is not None:
        optimizer.state[p] = {"momentum_buffer": momentum_buffer.copy()}
    optimizer.step()
    return p.data, optimizer.state[p]["momentum_buffer"]


def _steps(step, param, grads, lr, momentum, weight_decay):
    """Several steps in a row, each feeding its buffer to the next (starting from None)."""
    buf = None
    for grad in grads:
        param, buf = step(param, grad, buf, lr, momentum, weight_decay)
    return param, buf


def _case(rng, shape, first, lr=0.1, momentum=0.9, weight_decay=1e-2, dtype=np.float64):
    param = rng.standard_normal(shape).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    buf = None if first else rng.standard_normal(shape).astype(dtype)
    label = (f"{'first step' if first else 'later step'}, shape {shape}, lr {lr:g}, "
             f"momentum {momentum:g}, weight_decay {weight_decay:g}")
    label += "" if dtype == np.float64 else f", {np.dtype(dtype).name}"
    return Case(label, (param, grad, buf, lr, momentum, weight_decay),
                info={"first": first})


def cases(rng):
    yield _case(rng, (5,), first=True)  # no buffer yet: it starts as the gradient
    yield _case(rng, (3, 4), first=False)
    yield _case(rng, (2, 3), first=False, weight_decay=0.0)  # plain momentum
    yield _case(rng, (4, 3, 3, 3), first=False, lr=0.05, momentum=0.5, weight_decay=5e-2,
                dtype=np.float32)
    param = rng.standard_normal((2, 2))
    grads = [rng.standard_normal((2, 2)) for _ in range(3)]
    yield Case("3 steps in a row from no buffer, shape (2, 2), lr 0.1, momentum 0.9, "
               "weight_decay 0.01", (param, grads, 0.1, 0.9, 1e-2), runner=_steps,
               info={"first": True, "steps": 3})


def _variant(kind):
    """A step function with one typical mistake ``kind``."""

    def step(param, grad, buf, lr, momentum, weight_decay):
        g = grad if kind in ("no_decay", "decoupled") else grad + weight_decay * param
        if kind == "lr_in_buffer":
            new_buf = lr * g if buf is None else momentum * buf + lr * g
            return param - new_buf, new_buf
        if kind == "ema":
            new_buf = (1 - momentum) * g if buf is None else momentum * buf + (1 - momentum) * g
        else:
            new_buf = g.copy() if buf is None else momentum * buf + g
        if kind == "grad_step":
            return param - lr * g, new_buf
        new_param = param - lr * new_buf
        if kind == "decoupled":
            new_param = new_param - lr * weight_decay * param
        return new_param, new_buf

    return step


def diagnose(case, expected, got):
    got_param, got_buf = got
    for kind in ("no_decay", "decoupled", "ema", "lr_in_buffer", "grad_step"):
        p, b = case.call(_variant(kind))
        if np.allclose(got_param, p) and (kind == "grad_step" or np.allclose(got_buf, b)):
            return kind
    return None


HINTS = {
    "no_decay": "weight decay is missing: PyTorch adds it to the gradient FIRST, "
                "g = grad + weight_decay * param, and the momentum buffer accumulates that g.",
    "decoupled": "you applied weight decay separately (decoupled, as AdamW does); PyTorch's SGD "
                 "adds weight_decay * param to the gradient before the momentum buffer.",
    "ema": "PyTorch's buffer is buf = momentum * buf + g (no (1 - momentum) factor: that would "
           "be dampening), and on the first step buf = g.",
    "lr_in_buffer": "PyTorch keeps lr out of the buffer: buf = momentum * buf + g, then "
                    "param = param - lr * buf.",
    "grad_step": "the step must follow the momentum buffer, param - lr * buf, not the raw "
                 "gradient.",
    "none": "return the new momentum buffer too: the next step needs it.",
    "mismatch": "g = grad + weight_decay * param; buf = g on the first step (buffer None), "
                "else momentum * buf + g; param_new = param - lr * buf.",
}
