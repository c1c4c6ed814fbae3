# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Autograd from scratch
#
# Training a network means nudging every weight against the gradient of the loss.
# A ResNet has hundreds of thousands of weights, so nobody writes those derivatives by hand:
# an **autograd engine** records how the loss was computed and runs the chain rule backwards.
#
# In this tutorial you will
#
# 1. differentiate a tiny scalar chain **on paper** and turn the result into numbers,
# 2. get the same numbers from `minires.tensor(..., requires_grad=True)` and `.backward()`,
# 3. look at the **graph** the engine records (`.creator`, `.generation`) and at the
#    **order** in which backward visits it (`minires.viz.trace`),
# 4. check gradients numerically with `minires.gradcheck`, and watch it catch a bug.
#
# Run it as a script (`python tutorials/01_autograd.py`) or as a notebook
# (`jupytext --to notebook tutorials/01_autograd.py`).  Figures are written to the folder
# `$MINIRES_TUTORIAL_OUT` (default `tutorial-out/`).

# %% [markdown]
# **Open the source.** `minires/autograd.py`: `Function.__call__` records the graph;
# `minires/backward.py`: `run_backward` runs the chain rule, visiting Functions by
# generation; the operations themselves (`Mul`, `Sigmoid`, ...) are in `minires/ops/arithmetic.py`.
# **In the paper** (He et al., *Deep Residual Learning for Image Recognition*, arXiv
# [1512.03385](https://arxiv.org/abs/1512.03385)) every network is trained by SGD on
# gradients computed exactly like this: §3.4 (Implementation).

# %%
import math
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script: draw into files, never open windows
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import minires
import minires.viz

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)
minires.manual_seed(0)


def save(fig, name):
    """Write the figure to OUT/name; show it too when running inside Jupyter."""
    path = OUT / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure written: {path}")
    if "ipykernel" in sys.modules:
        plt.show()
    else:
        plt.close(fig)


# %% [markdown]
# ## 1.1 A scalar chain, on paper
#
# One neuron with a squared-error loss:
#
# $$ z = w x + b, \qquad s = \sigma(z) = \frac{1}{1 + e^{-z}}, \qquad L = (s - t)^2 . $$
#
# The chain rule multiplies the *local* derivative of each step, from the loss backwards:
#
# $$ \frac{\partial L}{\partial w}
#    = \underbrace{2 (s - t)}_{\partial L / \partial s}
#      \cdot \underbrace{s (1 - s)}_{\partial s / \partial z}
#      \cdot \underbrace{x}_{\partial z / \partial w},
#    \qquad
#    \frac{\partial L}{\partial b} = 2 (s - t) \cdot s (1 - s) \cdot 1 . $$
#
# Note that the first two factors are shared: backpropagation computes them **once** and
# reuses them for every input of the step.  That reuse is what makes it cheap.

# %%
x, w, b, t = 1.5, 0.8, -0.5, 1.0

z = w * x + b
s = 1 / (1 + math.exp(-z))
L = (s - t) ** 2
print(f"forward:  z = {z:.6f}   s = {s:.6f}   L = {L:.6f}")

dL_ds = 2 * (s - t)  # local derivative of the square
ds_dz = s * (1 - s)  # local derivative of the sigmoid
dL_dz = dL_ds * ds_dz  # the shared part
hand_dw, hand_db = dL_dz * x, dL_dz * 1.0
print(f"local:    dL/ds = {dL_ds:.6f}   ds/dz = {ds_dz:.6f}   dz/dw = x = {x}")
print(f"by hand:  dL/dw = {hand_dw:.10f}   dL/db = {hand_db:.10f}")

# %% [markdown]
# ## 1.2 The same chain with `minires.tensor`
#
# Leaves that we want gradients for get `requires_grad=True`.  Every operation on them
# is recorded; `L.backward()` then fills `.grad` of every leaf.  We use `float64` so that
# the comparison with the hand computation is exact to ~16 digits.

# %%
def T(value, name, grad=False):
    return minires.tensor(value, dtype="float64", requires_grad=grad, name=name)


w_t, b_t = T(w, "w", grad=True), T(b, "b", grad=True)
x_t, t_t = T(x, "x"), T(t, "t")

z_t = w_t * x_t + b_t
s_t = z_t.sigmoid()
L_t = (s_t - t_t) ** 2
L_t.backward()

print(f"autograd: dL/dw = {w_t.grad.item():.10f}   dL/db = {b_t.grad.item():.10f}")
diff = max(abs(w_t.grad.item() - hand_dw), abs(b_t.grad.item() - hand_db))
print(f"|autograd - hand| = {diff:.1e}")

# %% [markdown]
# ## 1.3 The graph the engine recorded
#
# Each result tensor remembers the `Function` that made it (`.creator`), and that
# function remembers its inputs (`.inputs`): a leaf itself, an intermediate as an `Edge`
# (its creator and which output), so that its array is freed once nothing needs it
# (as in PyTorch).  Both have `.name`, `.creator` and `generation`.  A leaf has
# `creator = None`.  The `generation` counts how far a tensor is from the leaves: a
# function's outputs get `1 + max(generation of its inputs)`.
#
# We rebuild the chain (the first `backward()` freed the graph to save memory), draw it
# with `minires.viz.draw_graph` (`minires.viz.to_dot` gives the same graph as Graphviz
# text) and walk it from the loss down to a leaf.

# %%
z_t = w_t * x_t + b_t
z_t.name = "z"
s_t = z_t.sigmoid()
s_t.name = "s"
L_t = (s_t - t_t) ** 2
L_t.name = "L"


# minires.viz draws the recorded graph: boxes are tensors (name, shape, dtype), grey
# ellipses the Functions that made them, arrows the forward pass.
save(minires.viz.draw_graph(L_t), "01_graph.png")
tensor = L_t
while tensor.creator is not None:  # follow the first input of each Function to a leaf
    print(f"{tensor.name or '(unnamed)':10s} made by {type(tensor.creator).__name__:8s} "
          f"generation {tensor.generation}")
    tensor = tensor.creator.inputs[0]
print(f"{tensor.name:10s} a leaf (creator None)   generation {tensor.generation}")

# %% [markdown]
# **Predict before you run.** Call `L.backward(retain_graph=True)` on the graph above
# (`retain_graph` keeps the graph for drawing). Which boxes will show a gradient `|grad|`:
# `w` and `b`, also `x` and `t`, or every tensor, including `z` and `s`? Write down your
# guess, then run the next two cells.

# %%
for leaf in (w_t, b_t):
    leaf.zero_grad()  # 1.2 already filled them: backward ADDS to .grad
L_t.backward(retain_graph=True)
save(minires.viz.draw_graph(L_t), "01_graph_with_gradients.png")

# %%
assert w_t.grad is not None and b_t.grad is not None
assert x_t.grad is None and t_t.grad is None  # constants: requires_grad=False
assert z_t.grad is None and s_t.grad is None  # intermediates: only with retain_grad()
print("✓ only the leaves that require grad keep a gradient "
      f"(|dL/dw| = {abs(w_t.grad.item()):.4f}); call retain_grad() to keep an intermediate's")

# %% [markdown]
# ## 1.4 In which order does backward visit the graph?
#
# In a chain the order is obvious.  It is not when a value is used **twice**.  Take
#
# $$ h = 2x, \qquad a = e^{h}, \qquad c = h \cdot h, \qquad y = a + c . $$
#
# $h$ feeds both $a$ and $c$, so $\partial y / \partial h = e^h + 2h$ is the **sum** of two
# contributions.  The engine may only push the gradient further down through $h$'s creator
# once *both* have arrived.  minires sorts the graph **topologically** (every consumer
# before its producer) and accumulates contributions while it waits.
#
# To watch it, we write our own `Function`: `Tap` is the identity in the forward pass and
# writes its label into a log when the backward pass reaches it.  Writing a `Function`
# takes a `forward` and a `backward` on raw arrays; that is all the engine needs.

# %%
class Tap(minires.Function):
    """y = x; backward records that it was reached, then passes the gradient through."""

    def __init__(self, label, log):
        self.label, self.log = label, log

    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        self.log.append(self.label)
        return grad


log = []
x_d = minires.tensor(0.5, dtype="float64", requires_grad=True, name="x")
h = Tap("h", log)(x_d * 2)
a = Tap("a", log)(h.exp())
c = Tap("c", log)(h * h)
y = Tap("y", log)(a + c)
for name, tensor in [("x", x_d), ("h", h), ("a", a), ("c", c), ("y", y)]:
    print(f"{name}: generation {tensor.generation}")

y.backward()
print("backward order: " + " -> ".join(log))
expected = 2 * (math.exp(1.0) + 2 * 1.0)  # dy/dx = 2 (e^h + 2h) at h = 1
print(f"dy/dx = {x_d.grad.item():.10f}   (formula 2(e^h + 2h) = {expected:.10f})")

# %% [markdown]
# `h` is visited **last** of the taps, after both of its consumers `a` and `c`: by then
# its gradient holds both contributions.  (Which of `a` and `c` goes first does not
# matter; they do not depend on each other.)
#
# ### Stepping through backward with `minires.viz.trace`
#
# The taps needed a custom `Function`.  `minires.viz.trace()` watches *every* Function
# instead: run `backward()` inside `with minires.viz.trace() as t:` and `t.table()` lists
# one row per Function **in the order backward ran it**:
#
# - `function`, `gen`: the Function's class and its generation (backward runs the highest first),
# - `inputs`: the tensors it was applied to (by name, else by shape; `()` is a constant),
# - `|grad out|`: the norm of the gradient that arrived at its output,
#   $\|\partial y/\partial \text{out}\|$,
# - `|grad in|`: the norm of the gradient it sent to each input (`-` where none was needed),
# - `in/out`: their ratio for a one-input function, the factor this step multiplied the
#   gradient by (for `Exp` it is $e^h$).
#
# **Predict before you run.** The same graph without taps: $h = 2x$, $a = e^h$, $c = h\cdot h$,
# $y = a + c$ at $x = 1/2$.  How many rows will the table have, which Function comes
# first, and what `|grad out|` will the `Mul` that made $h$ (the last row) receive?

# %%
x_d = minires.tensor(0.5, dtype="float64", requires_grad=True, name="x")
h = x_d * 2
h.name = "h"
a = h.exp()
a.name = "a"
c = h * h
c.name = "c"
y = a + c
y.name = "y"
with minires.viz.trace() as t:
    y.backward()
print(t.table())

# %%
steps = t.records
assert len(steps) == 4  # one row per Function: Mul (2x), Exp, Mul (h*h), Add
assert steps[0].function == type(y.creator).__name__ == "Add"  # the loss's Function first
assert steps[-1].inputs[0] == "x"  # h's creator last: it waited for both contributions
assert math.isclose(steps[-1].grad_out_norms[0], math.e + 2)  # dy/dh = e^h + 2h at h = 1
print(f"✓ {len(steps)} Functions, {steps[0].function} first; h's creator ran last and "
      f"received dy/dh = {steps[-1].grad_out_norms[0]:.4f} = e + 2, both contributions summed")

# %% [markdown]
# ## 1.5 Checking gradients numerically
#
# How do we know a backward pass is right?  Compare it with **central differences**:
#
# $$ \frac{\partial L}{\partial x_i} \approx
#    \frac{L(x + \varepsilon e_i) - L(x - \varepsilon e_i)}{2\varepsilon} . $$
#
# `minires.gradcheck(fn, *inputs)` does this for every input with `requires_grad=True`
# (in float64) and reports the relative error.  A correct op gives ~1e-9 or smaller, a bug
# gives ~1e-2 or worse; the default tolerance is 1e-6.

# %%
n = 4 if SIZE == "small" else 8
X = minires.randn(n, 5, dtype="float64", requires_grad=True)
W = minires.randn(5, 3, dtype="float64", requires_grad=True)


def layer(X, W):
    return (X @ W).tanh().sum(axis=1)


report = minires.gradcheck(layer, X, W)
print(report)
print(f"gradcheck passed: {report.passed}   max relative error {report.max_relative_error:.1e}")

chain = minires.gradcheck(lambda w, b: ((w * x_t + b).sigmoid() - t_t) ** 2, w_t, b_t)
print(f"gradcheck of the scalar chain passed: {chain.passed}   "
      f"max relative error {chain.max_relative_error:.1e}")

# %% [markdown]
# Now a bug: a square function whose backward "forgot" the factor 2 of $d(x^2)/dx = 2x$.
# The forward pass is right, so a training run would not crash; it would just learn badly.
# The gradient check catches it at once.

# %%
class BuggySquare(minires.Function):
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return grad * self.x  # wrong: should be grad * 2 * self.x


buggy = minires.gradcheck(lambda v: BuggySquare()(v), minires.randn(6, dtype="float64",
                                                                   requires_grad=True))
print(buggy)
print(f"buggy backward: gradcheck passed = {buggy.passed}   "
      f"relative error {buggy.max_relative_error:.2f}")

# %% [markdown]
# ## 1.6 Why float64 and ε = 1e-6?  A picture
#
# A central difference has two errors: the **truncation** error of the formula, which
# shrinks like ε², and the **rounding** error of the subtraction, which grows like
# (machine precision)/ε.  The total is smallest in between.
#
# * float32 (precision ~1e-7) gets no better than ~1e-6, right at the tolerance, and
#   at gradcheck's ε = 1e-6 (dashed line) it is off by ~1e-2: a *correct* gradient
#   would look like a bug.
# * float64 (precision ~1e-16) gets down to ~1e-12 near ε = 1e-5..1e-6.

# %%
eps_values = np.logspace(-12, -1, 45)
exact = math.cos(1.0)  # d/dx sin(x) at x = 1
fig, ax = plt.subplots(figsize=(6, 3.8))
for dtype in (np.float32, np.float64):
    one = dtype(1.0)
    errors = []
    for eps in eps_values:
        e = dtype(eps)
        estimate = (np.sin(one + e) - np.sin(one - e)) / (dtype(2) * e)
        errors.append(max(abs(float(estimate) - exact) / abs(exact), 1e-17))
    ax.loglog(eps_values, errors, "o-", ms=3, label=np.dtype(dtype).name)
    best = int(np.argmin(errors))
    print(f"{np.dtype(dtype).name}: best relative error {errors[best]:.1e} at eps = "
          f"{eps_values[best]:.0e}")
ax.axvline(1e-6, color="gray", ls="--", lw=1)
ax.set_xlabel("step ε")
ax.set_ylabel("relative error of the central difference")
ax.set_title("d/dx sin(x) at x = 1")
ax.legend()
save(fig, "01_finite_difference_error.png")

# %% [markdown]
# ## What you saw
#
# * The chain rule is a product of **local** derivatives; autograd computes exactly the
#   numbers you get on paper (difference 0 to float64 precision).
# * Every result tensor keeps its `creator` and every function its `inputs`: that is the
#   **graph**.  `generation` counts the steps from the leaves.
# * `backward()` visits the graph in **topological order**: a tensor used twice waits for
#   both gradient contributions and adds them (`h` came last).
#   `minires.viz.trace()` lists that order for any backward pass, with the gradient
#   norms each Function received and sent on.
# * A `Function` is just a `forward` and a `backward` on arrays; every layer in minires is
#   built this way.
# * `minires.gradcheck` compares against central differences in float64 and flags a
#   wrong backward (relative error ~0.5) that a forward test would never see.
#
# **Next:** tutorial 2 uses these gradients to see why deep networks stopped learning.
#
# | English | 中文 |
# |---|---|
# | chain rule | 链式法则 |
# | backpropagation | 反向传播 |
# | computational graph | 计算图 |
# | gradient check | 梯度检验 |

# %% [markdown]
# ## Your turn: `matmul_backward`
#
# Write the backward pass of `y = a @ b`: `grad_a = grad_y @ b^T` and `grad_b = a^T @
# grad_y`. When `a` or `b` was broadcast over leading batch axes, its gradient is the SUM
# over the copies (the rule of 1.4: a value used several times adds up its gradients).
# Return `(grad_a, grad_b)`, shaped like `a` and `b`.
#
# Replace `raise NotImplementedError` with your code and run the cell, then run the check
# below. The checker runs your function **in a separate process** on several inputs (edge
# cases and a float32 one), compares it with minires's own kernel and explains the first
# value that differs. It says "not started" until you write something. The full exercise,
# with a longer docstring and hints, is `tutorials/exercises/matmul_backward.py` (`python
# -m minires check matmul_backward` checks that file).

# %%
def matmul_backward(grad_y, a, b):
    """Gradients of y = a @ b: return (grad_a, grad_b), shaped like a and b."""
    raise NotImplementedError  # your code here: see tutorials/exercises/matmul_backward.py

# %%
from minires.exercises import check

result = check("matmul_backward", matmul_backward)
