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
# # 2. Why gradients vanish
#
# Before ResNets, the best-known obstacle to depth was the **vanishing gradient**:
# backpropagation multiplies one factor per layer, and if those factors are below one,
# the gradient that reaches the first layers is a product of many small numbers.  Those
# layers then barely learn.
#
# In this tutorial you will
#
# 1. measure the sigmoid's derivative with autograd and see that σ'(z) ≤ 0.25,
# 2. follow a gradient down a chain of one-neuron layers and watch it shrink geometrically,
# 3. sweep the depth of real MLPs on MNIST digits and compare per-layer gradient norms for
#    sigmoid, tanh and ReLU units with three initialisations: N(0, 1), Xavier and He.

# %% [markdown]
# **Open the source.** `minires/kernels/activation.py`: `sigmoid_forward` and
# `sigmoid_backward` (the factor $y(1-y)$ you will see shrink), `tanh_backward`,
# `relu_backward`; the initialisations are in `minires/nn/init.py` (`xavier_normal_`,
# `kaiming_normal_`). **In the paper** (He et al., *Deep Residual Learning for Image
# Recognition*, arXiv [1512.03385](https://arxiv.org/abs/1512.03385)): §1 (Introduction),
# where vanishing/exploding gradients are said to be "largely addressed by normalized
# initialization and intermediate normalization layers"; tutorial 6 shows what remains.

# %%
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script: draw into files, never open windows
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import minires
from minires import functional as F
from minires import nn
from minires.data import load_mnist
from minires.nn import init

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)
minires.manual_seed(0)

CHAINS = 200 if SIZE == "small" else 2000  # one-neuron chains drawn in section 2.2
WIDTH = 32 if SIZE == "small" else 64  # hidden units of the MLPs in section 2.3
BATCH = 64 if SIZE == "small" else 256  # MNIST digits used to measure the gradients
DEPTHS = (5, 10, 20)


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
# ## 2.1 The sigmoid's derivative is at most 1/4
#
# $\sigma(z) = 1 / (1 + e^{-z})$ has $\sigma'(z) = \sigma(z)\,(1 - \sigma(z))$, a product of
# two numbers that add up to 1, so it is largest when both are 1/2: $\sigma'(0) = 1/4$.
# We do not even need the formula: autograd gives the derivative at every point of a
# grid in one backward pass (the sum's gradient w.r.t. each $z_i$ is $\sigma'(z_i)$).

# %%
z = minires.tensor(np.linspace(-6, 6, 241), dtype="float64", requires_grad=True)
z.sigmoid().sum().backward()
d_sigmoid = z.grad.numpy()

z2 = minires.tensor(np.linspace(-6, 6, 241), dtype="float64", requires_grad=True)
z2.tanh().sum().backward()
d_tanh = z2.grad.numpy()

print(f"max sigma'(z) = {d_sigmoid.max():.4f} at z = {z.numpy()[d_sigmoid.argmax()]:.2f}")
print(f"sigma'(4) = {d_sigmoid[200]:.4f}   (a saturated unit passes almost nothing back)")
print(f"max tanh'(z) = {d_tanh.max():.4f}   relu'(z) = 1 for z > 0, 0 for z < 0")

fig, ax = plt.subplots(figsize=(6, 3.5))
grid = z.numpy()
ax.plot(grid, 1 / (1 + np.exp(-grid)), label="σ(z)")
ax.plot(grid, d_sigmoid, label="σ'(z)  (max 1/4)")
ax.plot(grid, d_tanh, "--", label="tanh'(z)  (max 1)")
ax.axhline(0.25, color="gray", lw=0.8, ls=":")
ax.set_xlabel("z")
ax.legend()
ax.set_title("Derivatives from autograd")
save(fig, "02_sigmoid_derivative.png")

# %% [markdown]
# **Predict before you run.** Ten sigmoids in a row, $y = \sigma(\sigma(\dots\sigma(h)))$,
# starting at $h = 0$. Each step multiplies the gradient by $\sigma'(z) \le 1/4$. How
# small can $dy/dh$ be at most: about 0.1, about $10^{-3}$ or about $10^{-6}$? Guess, then
# run.

# %%
h = minires.tensor(0.0, dtype="float64", requires_grad=True)
out = h
for _ in range(10):
    out = out.sigmoid()
out.backward()
print(f"dy/dh through 10 sigmoids = {h.grad.item():.2e}   (1/4)^10 = {0.25 ** 10:.2e}")

# %%
assert 0 < h.grad.item() <= 0.25 ** 10
print("✓ at least a factor 4 lost per sigmoid: 10 layers leave less than one millionth")

# %% [markdown]
# **Watch each factor.** `minires.viz.trace()` (from tutorial 1) lists every Function the
# backward pass ran, with the norm of the gradient it received (`|grad out|`) and sent
# down (`|grad in|`).  For a `Sigmoid` row the ratio `in/out` is exactly the local factor
# $\sigma'(z)$, so every one should be at most 1/4.  A hook on each hidden activation,
# `a.register_hook(fn)`, sees the gradient arriving at that layer: it shrinks row by row.

# %%
h = minires.tensor(0.0, dtype="float64", requires_grad=True, name="h")
arrived = {}  # layer -> |dy/da_layer|, filled by the hooks during backward
out = h
for layer in range(1, 11):
    out = out.sigmoid()
    out.name = f"a{layer}"
    out.register_hook(lambda grad, layer=layer: arrived.update({layer: abs(grad.item())}))
with minires.viz.trace() as t:
    out.backward()
print(t.table())
print("gradient arriving at each activation (from the hooks): "
      + ", ".join(f"a{layer} {arrived[layer]:.1e}" for layer in sorted(arrived, reverse=True)))

# %%
gains = [step.gain for step in t.records if step.function == "Sigmoid"]
assert len(gains) == 10 and all(0 < gain <= 0.25 for gain in gains)
assert all(arrived[layer] < arrived[layer + 1] for layer in range(1, 10))
print(f"✓ all 10 Sigmoid rows have in/out <= 1/4 (largest {max(gains):.4f}, the bottom "
      f"one at z = h = 0); the gradient falls from {arrived[10]:.0e} at a10 to "
      f"{arrived[1]:.1e} at a1")

# %% [markdown]
# ## 2.2 A chain of one-neuron layers
#
# $$ a_0 = x, \qquad z_l = w_l a_{l-1} + b_l, \qquad a_l = \sigma(z_l), \qquad y = a_L . $$
#
# The chain rule gives the gradient that reaches layer $l$'s bias:
#
# $$ \frac{\partial y}{\partial b_l} = \sigma'(z_L)\, w_L\, \sigma'(z_{L-1})\, w_{L-1} \cdots
#    w_{l+1}\, \sigma'(z_l) , $$
#
# one factor $w\,\sigma'(z)$ per layer above $l$.  With $\sigma' \le 1/4$ and weights of
# order one, each factor is small, so the gradient **shrinks geometrically** as it goes
# down.  We draw many random chains at once (each entry of a vector is its own chain)
# and let autograd compute every $\partial y / \partial b_l$ in one backward pass.

# %%
L = 20
x = minires.tensor(np.full(CHAINS, 0.5), dtype="float64")
ws = [minires.randn(CHAINS, dtype="float64") for _ in range(L)]
bs = [minires.randn(CHAINS, dtype="float64", requires_grad=True) for _ in range(L)]
a, zs = x, []
for w, b in zip(ws, bs, strict=True):
    z_l = w * a + b
    zs.append(z_l.numpy().copy())
    a = z_l.sigmoid()
a.sum().backward()  # the chains are independent, so this gives each chain's gradients

grads = np.stack([b.grad.numpy() for b in bs])  # (L, CHAINS): dy/db_l
# The same gradient from the chain-rule product, for the bottom layer l = 1:
s = [1 / (1 + np.exp(-z_l)) for z_l in zs]
product = s[0] * (1 - s[0])
for l in range(1, L):
    product = product * ws[l].numpy() * s[l] * (1 - s[l])
print(f"chain-rule product vs autograd (dy/db_1): max |difference| = "
      f"{np.abs(product - grads[0]).max():.1e}")
weights = np.abs(np.stack([w.numpy() for w in ws[1:]])).prod(axis=0)
print(f"bound |dy/db_1| <= 0.25^{L} * prod|w| holds in all {CHAINS} chains: "
      f"{bool(np.all(np.abs(grads[0]) <= 0.25**L * weights))}")
median = np.median(np.abs(grads), axis=1)
for l in (L, 15, 10, 5, 1):
    print(f"layer {l:2d} ({L - l:2d} layers below the top): median |dy/db| = {median[l - 1]:.1e}")

fig, ax = plt.subplots(figsize=(6, 3.5))
layers = np.arange(1, L + 1)
ax.semilogy(layers, median, "o-", label="median |∂y/∂b_l| over the chains")
ax.semilogy(layers, 0.25 ** (L - layers + 1), "--", label="0.25^(L - l + 1): the σ' bound alone")
ax.set_xlabel("layer l (1 = bottom, next to the input)")
ax.set_ylabel("gradient")
ax.set_title(f"One-neuron sigmoid chains, depth {L}")
ax.legend()
save(fig, "02_chain_gradients.png")

# %% [markdown]
# The gradient at the bottom is many orders of magnitude smaller than at the top; the
# straight line on a log scale is the signature of a **geometric** decay.  It falls even
# faster than 0.25 per layer: a typical factor $|w\,\sigma'(z)|$ is nearer 0.1, because
# most units do not sit exactly at $z = 0$ and many weights are small.
#
# ## 2.3 Real networks: a depth sweep on MNIST
#
# Now MLPs with `WIDTH` hidden units per layer, on a batch of real digits (flattened to
# 784 inputs), with cross-entropy loss.  We do not train: the question is whether a
# gradient can reach the first layers **at all** at initialisation.  For every Linear
# layer $l$ we record $\lVert \partial L / \partial W_l \rVert$.
#
# Three initialisations, for a layer with `fan_in` inputs and `fan_out` outputs:
#
# * **N(0, 1)**: weights of standard deviation 1, too large: pre-activations grow like
#   $\sqrt{\text{fan\_in}}$ and sigmoid/tanh units saturate (σ' ≈ 0).
# * **Xavier / Glorot** (2010): $\operatorname{Var}(W) = 2 / (\text{fan\_in} + \text{fan\_out})$,
#   keeps the scale of the signal for units that behave linearly near 0 (tanh).
# * **He / Kaiming** (2015): $\operatorname{Var}(W) = 2 / \text{fan\_in}$; the extra factor
#   2 compensates the ReLU, which zeroes half of its inputs and so halves the variance.

# %%
x_all, y_all = load_mnist("train")
xb = minires.tensor(x_all[:BATCH].reshape(BATCH, -1))
yb = y_all[:BATCH]

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
INITS = {
    "N(0,1)": lambda weight: init.normal_(weight, 0.0, 1.0),
    "Xavier": lambda weight: init.xavier_normal_(weight),
    "He": lambda weight: init.kaiming_normal_(weight, nonlinearity="relu"),
}


def make_mlp(depth, activation, initialise):
    """depth Linear layers: 784 -> WIDTH -> ... -> WIDTH -> 10, activation in between."""
    layers, features = [], 784
    for _ in range(depth - 1):
        layers += [nn.Linear(features, WIDTH), ACTIVATIONS[activation]()]
        features = WIDTH
    layers.append(nn.Linear(features, 10))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            INITS[initialise](layer.weight)
            init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def gradient_norms(depth, activation, initialise):
    """||dL/dW_l|| for l = 1..depth, and the std of the last hidden layer's output."""
    minires.manual_seed(0)
    model = make_mlp(depth, activation, initialise)
    hidden = []
    model[-2].register_forward_hook(lambda module, inputs, out: hidden.append(out))
    loss = F.cross_entropy(model(xb), yb)
    loss.backward()
    norms = [float(np.sqrt(np.sum(layer.weight.grad.numpy().astype(np.float64) ** 2)))
             for layer in model if isinstance(layer, nn.Linear)]
    return np.array(norms), float(hidden[0].numpy().std())


results = {}
for activation in ACTIVATIONS:
    for initialise in INITS:
        for depth in DEPTHS:
            results[activation, initialise, depth] = gradient_norms(depth, activation, initialise)

# %% [markdown]
# The table shows, for each network, the **ratio** $\lVert \partial L/\partial W_2 \rVert /
# \lVert \partial L/\partial W_{L-1} \rVert$ between the first and the last
# hidden-to-hidden layer (they have the same shape, so the norms compare like with like),
# and the standard deviation of the last hidden layer's output (the forward signal).
# A ratio far below 1 means the gradient **vanishes** on its way down.

# %%
print(f"{'activation':10s} {'init':7s} " + " ".join(f"{'depth ' + str(d):>19s}" for d in DEPTHS))
print(f"{'':18s} " + " ".join(f"{'ratio':>9s} {'out std':>9s}" for _ in DEPTHS))
for activation in ACTIVATIONS:
    for initialise in INITS:
        cells = []
        for depth in DEPTHS:
            norms, std = results[activation, initialise, depth]
            cells.append(f"{norms[1] / norms[-2]:9.1e} {std:9.1e}")
        print(f"{activation:10s} {initialise:7s} " + " ".join(cells))

deep = DEPTHS[-1]
sig = results["sigmoid", "Xavier", deep][0]
relu = results["relu", "He", deep][0]
print(f"depth {deep}: sigmoid/Xavier ratio {sig[1] / sig[-2]:.1e}, "
      f"relu/He ratio {relu[1] / relu[-2]:.1e}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
for ax, activation in zip(axes, ACTIVATIONS, strict=True):
    for initialise in INITS:
        norms = results[activation, initialise, deep][0]
        ax.semilogy(np.arange(1, deep + 1), norms, "o-", ms=3, label=initialise)
    ax.set_title(f"{activation}, depth {deep}")
    ax.set_xlabel("layer l (1 = next to the input)")
axes[0].set_ylabel("‖∂L/∂W_l‖")
axes[0].legend()
fig.suptitle("Gradient norm per layer at initialisation (MNIST batch)")
save(fig, "02_mlp_gradient_norms.png")

# %% [markdown]
# How to read it:
#
# * **sigmoid**: whatever the initialisation, the gradient falls by orders of magnitude
#   from the top layer to the bottom one.  With Xavier weights each layer multiplies it by
#   roughly (weight gain ~1) × (σ' ≤ 1/4).  N(0, 1) weights are large enough to offset
#   the 1/4, but only by saturating the units.
# * **tanh** with Xavier (or He) keeps the gradient level, because tanh'(0) = 1; with
#   N(0, 1) weights it saturates and the gradient now *grows* towards the input
#   (exploding gradients are the same disease with the opposite sign).
# * **relu** with **He** keeps both the forward signal (output std of order one at every
#   depth) and the gradient level.  With Xavier the per-layer gradients are level, but the forward
#   signal shrinks by √2 per layer, so everything gets small with depth; with N(0, 1) it
#   explodes by ~√(WIDTH/2) per layer.
#
# Good initialisation and ReLU fix the *scale* at the start of training.  They do not
# keep it fixed while the weights change, and they do not make a deep stack easy to
# optimise: tutorial 6 shows a deep plain network that has BatchNorm, ReLU and He
# initialisation and still trains worse than a shallow one.
#
# ## What you saw
#
# * σ'(z) ≤ 1/4 (autograd found the maximum 0.25 at z = 0), and a saturated unit passes
#   back almost nothing (σ'(4) ≈ 0.018).
# * In a chain, the gradient reaching layer l is a **product** of one factor per layer
#   above it, so it decays geometrically; the chain-rule product and autograd agree.
# * In a 20-layer sigmoid MLP with Xavier weights, the first hidden layer's gradient is
#   about 1e-10 of the last one's; ReLU + He initialisation keeps them within a factor of
#   a few.
#
# **Next:** tutorial 3 opens up the convolution, the layer ResNets are made of.
#
# | English | 中文 |
# |---|---|
# | vanishing gradient | 梯度消失 |
# | exploding gradient | 梯度爆炸 |
# | activation function | 激活函数 |
# | initialisation | 初始化 |
# | saturation | 饱和 |

# %% [markdown]
# ## Your turn: `sigmoid_backward`
#
# Write the sigmoid's backward pass from its forward output `y`: `grad_x = grad_y * y * (1
# - y)`, elementwise, with the shape and dtype of `grad_y` (`y` is in (0, 1)).
#
# Replace `raise NotImplementedError` with your code and run the cell, then run the check
# below. The checker runs your function **in a separate process** on several inputs (edge
# cases and a float32 one), compares it with minires's own kernel and explains the first
# value that differs. It says "not started" until you write something. The full exercise,
# with a longer docstring and hints, is `tutorials/exercises/sigmoid_backward.py` (`python
# -m minires check sigmoid_backward` checks that file).

# %%
def sigmoid_backward(grad_y, y):
    """grad_x = grad_y * y * (1 - y): the sigmoid's backward pass from its output y."""
    raise NotImplementedError  # your code here: see tutorials/exercises/sigmoid_backward.py

# %%
from minires.exercises import check

result = check("sigmoid_backward", sigmoid_backward)
