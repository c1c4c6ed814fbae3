"""Numerical gradient checking (central differences, float64).

The check, as in CS231n:

* Pick a *random* upstream gradient ``g`` (same shape as the output ``y``) and compare the
  gradients of the scalar ``L = sum(g * y)``.  Checking ``sum(y)`` instead would hide bugs
  whose error is constant along the all-ones direction: for BatchNorm,
  ``d sum(BN(x)) / dx = 0`` whatever the backward pass gets wrong.
* Numerical gradient by central differences:
  ``dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)``, error O(eps^2).
* Relative error ``max|a - n| / max(max|a|, max|n|)`` over all elements of one input,
  where ``a`` is the analytic and ``n`` the numerical gradient.

Thresholds (float64, eps = 1e-6): a correct smooth op gives relative errors around 1e-9
to 1e-11 (the rounding error of L, ~1e-16 * |L|, divided by eps, shows up at ~1e-10);
a real bug gives 1e-2 or worse.  :data:`DEFAULT_TOLERANCE` = 1e-6 sits between the two
with room for ops with kinks (ReLU, max-pool, abs), whose checks must keep inputs away
from the kink by more than eps.  Always check in float64: in float32 the rounding error
alone is ~1e-7 / eps and drowns the signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minires.backend import get_array_module, to_numpy

DEFAULT_EPS = 1e-6
DEFAULT_TOLERANCE = 1e-6


def _upstream_rng(seed: int) -> np.random.Generator:
    """The generator of random upstream gradients: a stream of its own, so it never equals
    a test's inputs drawn from ``default_rng(seed)`` (with g = x, BatchNorm's true input
    gradient is ~0 and the check would compare rounding noise)."""
    return np.random.default_rng((seed, 0x5EED))


def numerical_gradient(f, inputs, grad_output, eps: float = DEFAULT_EPS, wrt=None):
    """Central-difference gradients of ``L = sum(grad_output * f(*inputs))``.

    Args:
        f: function of arrays returning one array ``y``.
        inputs: list of float64 arrays; perturbed in place one element at a time and
            restored afterwards.
        grad_output: array with ``y``'s shape (the upstream gradient).
        eps: finite-difference step.
        wrt: indices of the inputs to differentiate (default: all).

    Returns:
        A list with, for each input, an array of its shape holding dL/d input (``None``
        for inputs not in ``wrt``).
    """
    xp = get_array_module(*inputs)
    wrt = range(len(inputs)) if wrt is None else wrt
    grads = [None] * len(inputs)

    def loss() -> float:
        return float(xp.sum(grad_output * f(*inputs)))

    for i in wrt:
        x = inputs[i]
        if x.dtype != np.float64:
            raise TypeError(f"gradient checks need float64 inputs; input {i} is {x.dtype}")
        grad = xp.zeros_like(x)
        flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)  # views into x and grad
        for j in range(flat_x.size):
            original = flat_x[j].item()
            flat_x[j] = original + eps
            plus = loss()
            flat_x[j] = original - eps
            minus = loss()
            flat_x[j] = original
            flat_grad[j] = (plus - minus) / (2 * eps)
        grads[i] = grad
    return grads


@dataclass
class GradientComparison:
    """How one input's analytic gradient compares with the numerical one."""

    name: str
    relative_error: float
    worst_index: tuple
    analytic: float  # the analytic gradient at worst_index
    numeric: float  # the numerical gradient at worst_index

    def __str__(self) -> str:
        return (
            f"{self.name}: relative error {self.relative_error:.2e} "
            f"(worst at {self.worst_index}: analytic {self.analytic:.6g}, "
            f"numeric {self.numeric:.6g})"
        )


@dataclass
class GradcheckReport:
    """The outcome of a gradient check: one comparison per checked input."""

    comparisons: list = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def max_relative_error(self) -> float:
        return max((c.relative_error for c in self.comparisons), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_relative_error <= self.tolerance

    def assert_ok(self) -> GradcheckReport:
        """Raise AssertionError listing every input when the check failed."""
        if not self.passed:
            raise AssertionError(f"gradient check failed (tolerance {self.tolerance:g}):\n{self}")
        return self

    def __str__(self) -> str:
        return "\n".join(str(c) for c in self.comparisons)


def compare_gradients(analytic, numeric, name: str = "input") -> GradientComparison:
    """Relative error ``max|a - n| / max(max|a|, max|n|)`` and where it is worst.

    Two all-zero gradients compare as equal (error 0).
    """
    a = np.asarray(to_numpy(analytic), dtype=np.float64)
    n = np.asarray(to_numpy(numeric), dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"{name}: analytic gradient shape {a.shape} != numeric {n.shape}")
    diff = np.abs(a - n)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(n), initial=0.0))
    if diff.size == 0 or scale == 0.0:
        return GradientComparison(name, 0.0, (), 0.0, 0.0)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return GradientComparison(
        name, float(diff[worst] / scale), tuple(int(i) for i in worst), float(a[worst]),
        float(n[worst]),
    )


def check_array_gradients(forward, backward, inputs, grad_output=None, wrt=None,
                          eps: float = DEFAULT_EPS, tolerance: float = DEFAULT_TOLERANCE,
                          names=None, seed: int = 0) -> GradcheckReport:
    """Check a hand-written backward kernel against central differences.

    Args:
        forward: ``forward(*inputs) -> y`` on float64 arrays.
        backward: ``backward(grad_output, *inputs) -> sequence`` of gradients, one per
            input in ``wrt`` (in that order).
        inputs: float64 arrays.
        grad_output: upstream gradient; random normal of ``y``'s shape when omitted.
        wrt: indices of inputs to check (default: all).

    Returns:
        A :class:`GradcheckReport`; call ``.assert_ok()`` in tests.
    """
    xp = get_array_module(*inputs)
    wrt = list(range(len(inputs))) if wrt is None else list(wrt)
    if grad_output is None:
        y = forward(*inputs)
        grad_output = xp.asarray(_upstream_rng(seed).standard_normal(y.shape))
    analytic = list(backward(grad_output, *inputs))
    if len(analytic) != len(wrt):
        raise ValueError(f"backward returned {len(analytic)} gradients for {len(wrt)} inputs")
    numeric = numerical_gradient(forward, inputs, grad_output, eps=eps, wrt=wrt)
    names = names or [f"input {i}" for i in range(len(inputs))]
    report = GradcheckReport(tolerance=tolerance)
    for a, i in zip(analytic, wrt, strict=True):
        report.comparisons.append(compare_gradients(a, numeric[i], names[i]))
    return report


def gradcheck(fn, *inputs, grad_output=None, eps: float = DEFAULT_EPS,
              tolerance: float = DEFAULT_TOLERANCE, seed: int = 0) -> GradcheckReport:
    """Check autograd's gradients of ``fn(*inputs)`` against central differences.

    Every input Tensor with ``requires_grad=True`` is checked; all must be float64.
    ``fn`` must be deterministic (no dropout; BatchNorm running statistics may update,
    they do not feed back into the output in training mode).

    Example::

        x = minires.randn(3, 4, dtype="float64", requires_grad=True)
        gradcheck(lambda t: (t * t).sum(axis=1), x).assert_ok()

    Returns:
        A :class:`GradcheckReport` (``.passed``, ``.max_relative_error``, ``.assert_ok()``).
    """
    from minires.autograd import Tensor, no_grad  # the engine sits above this module

    tensors = [x for x in inputs if isinstance(x, Tensor)]
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs; input {i} is {inputs[i].dtype} "
                            "(create it with dtype='float64' or use default_dtype(float64))")
    for t in tensors:
        t.grad = None
    output = fn(*inputs)
    xp = get_array_module(output.data)
    if grad_output is None:
        grad_output = _upstream_rng(seed).standard_normal(output.shape)
    grad_output = xp.asarray(grad_output, dtype=np.float64)
    output.backward(grad_output)

    def evaluate(*_arrays):  # numerical_gradient perturbs the inputs' arrays in place
        with no_grad():
            return fn(*inputs).data

    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    numeric = numerical_gradient(evaluate, arrays, grad_output, eps=eps, wrt=checked)
    report = GradcheckReport(tolerance=tolerance)
    for i in checked:
        analytic = inputs[i].grad.data if inputs[i].grad is not None else xp.zeros_like(arrays[i])
        name = inputs[i].name or f"input {i}"
        report.comparisons.append(compare_gradients(analytic, numeric[i], name))
    return report
