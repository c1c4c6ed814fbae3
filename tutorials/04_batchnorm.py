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
# # 4. BatchNorm, forward and backward
#
# Every convolution in a ResNet is followed by **Batch Normalization** (Ioffe & Szegedy,
# 2015).  It standardises each channel over the current mini-batch, so every layer sees
# inputs of a steady scale however the earlier weights drift.  That lets deep nets train
# with large learning rates, and in a ResNet the scale γ of the last BN of each residual
# branch decides how much the branch adds to the identity path (tutorial 7).
#
# In this tutorial you will
#
# 1. compute the forward pass by hand and compare it with the kernel,
# 2. derive the compact backward formula and check it numerically,
# 3. see why a gradient check needs a *random* upstream gradient,
# 4. watch the running statistics converge, and compare train and eval mode.
#
# The kernels are `batch_norm_forward` and `batch_norm_backward` in
# `minires/kernels/norm.py` (plain NumPy arrays); the layer is `minires.nn.BatchNorm2d`.

# %% [markdown]
# **Open the source.** `minires/kernels/norm.py`: `batch_norm_forward` (the formulas and
# the running-statistics convention in its docstring) and `batch_norm_backward` (the
# compact formula derived below); the layer is `BatchNorm2d` in `minires/nn/layers.py`.
# **In the paper** (He et al., *Deep Residual Learning for Image Recognition*, arXiv
# [1512.03385](https://arxiv.org/abs/1512.03385)): §3.4 (Implementation), "we adopt batch
# normalization (BN) right after each convolution and before activation".

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
from minires.kernels.norm import batch_norm_backward, batch_norm_forward

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)
minires.manual_seed(0)
rng = np.random.default_rng(0)

STEPS = 60 if SIZE == "small" else 200  # training batches for the running statistics


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
# ## 4.1 The forward pass
#
# Per channel, over the $m$ values of the batch ($m = N$ for features `(N, C)`,
# $m = N \cdot H \cdot W$ for images `(N, C, H, W)`):
#
# $$ \mu = \frac1m \sum_i x_i, \qquad \sigma^2 = \frac1m \sum_i (x_i - \mu)^2, \qquad
#    \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad
#    y_i = \gamma\, \hat x_i + \beta . $$
#
# $\hat x$ has mean 0 and variance 1; γ and β are learned, so the network can undo the
# normalisation if that helps.  Our batch has three features on very different scales.

# %%
m, C = 16, 3
x = rng.normal(loc=[5.0, -2.0, 0.0], scale=[3.0, 0.1, 1.0], size=(m, C))
gamma = np.array([1.0, 2.0, 0.5])
beta = np.array([0.0, 1.0, -1.0])
eps = 1e-5

mu = x.mean(axis=0)
var = ((x - mu) ** 2).mean(axis=0)
x_hat = (x - mu) / np.sqrt(var + eps)
y_hand = gamma * x_hat + beta

y_kernel, cache = batch_norm_forward(x, gamma, beta, None, None, training=True, eps=eps)
print("per-feature mean before:", np.round(mu, 3), "  std before:", np.round(np.sqrt(var), 3))
print("per-feature mean of x_hat:", np.round(x_hat.mean(axis=0), 12),
      "  std of x_hat:", np.round(x_hat.std(axis=0), 6))
print(f"forward: by hand vs kernel, max |difference| = {np.abs(y_hand - y_kernel).max():.1e}")

# %% [markdown]
# **Predict before you run.** Normalise a batch of 64 images with 4 channels in training
# mode, with γ = 1 and β = 0. Each channel's values came with a different mean and spread.
# What will the mean and the standard deviation of each output channel be, over the batch
# and the pixels?

# %%
images = rng.normal(loc=3.0, scale=[[[[0.5]], [[2.0]], [[5.0]], [[10.0]]]], size=(64, 4, 3, 3))
y_pred, _ = batch_norm_forward(images, np.ones(4), np.zeros(4), None, None, training=True)
channel_mean = y_pred.mean(axis=(0, 2, 3))
channel_std = y_pred.std(axis=(0, 2, 3))
print("output mean per channel:", np.round(channel_mean, 6), " std:", np.round(channel_std, 4))

# %%
assert np.allclose(channel_mean, 0, atol=1e-9) and np.allclose(channel_std, 1, atol=1e-3)
print("✓ mean 0 and std 1 in every channel, whatever the input's scale (std a hair under 1: ε)")

# %% [markdown]
# Feature 1 has a tiny spread (std ≈ 0.07), so $\varepsilon = 10^{-5}$ is not negligible
# next to its variance ≈ 0.005: its $\hat x$ comes out with std 0.999 instead of 1.
# That is the price of never dividing by zero.
#
# ## 4.2 The backward pass, derived
#
# Write $s = 1/\sqrt{\sigma^2 + \varepsilon}$ and $dy = \partial L / \partial y$.  The
# parameters are easy: $\partial L/\partial \beta = \sum_i dy_i$ and
# $\partial L/\partial \gamma = \sum_i dy_i\, \hat x_i$.
#
# The input is the interesting part: $x_j$ reaches the loss through its own $\hat x_j$
# **and** through $\mu$ and $\sigma^2$, which every $\hat x_i$ uses.  With
# $\partial \mu/\partial x_j = 1/m$ and $\partial \sigma^2/\partial x_j = 2 (x_j - \mu)/m$,
#
# $$ \frac{\partial \hat x_i}{\partial x_j}
#    = s\left( [i = j] - \frac1m - \frac{\hat x_i\, \hat x_j}{m} \right) . $$
#
# Summing $\gamma\, dy_i \cdot \partial \hat x_i / \partial x_j$ over $i$ gives the
# **compact formula**
#
# $$ \frac{\partial L}{\partial x} = \frac{\gamma\, s}{m}\Big( m\, dy - \sum_i dy_i
#    - \hat x \sum_i dy_i\, \hat x_i \Big) . $$
#
# The two subtracted terms remove the parts of $dy$ that only **shift** or **scale** the
# whole channel: BatchNorm normalises those away, so they cannot change the loss.
# Three lines of NumPy:

# %%
def bn_backward_compact(dy, x_hat, gamma, s):
    m = dy.shape[0]
    return (gamma * s / m) * (m * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0))


# %% [markdown]
# ## 4.3 Checking it numerically
#
# Central differences on $L = \sum_i g_i \cdot y_i$ for a **random** upstream gradient $g$
# (section 4.4 shows why random).  Each of the $m \cdot C$ inputs is nudged by ±ε and the
# loss recomputed: slow, but obviously right.

# %%
def bn_forward(x):
    mu = x.mean(axis=0)
    return gamma * (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=0) + eps) + beta


def numerical_grad(f, x, g, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (np.sum(g * f(plus)) - np.sum(g * f(minus))) / (2 * h)
    return grad


def relative_error(a, b):
    return np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max())


g = rng.standard_normal(x.shape)
s = 1 / np.sqrt(var + eps)
compact = bn_backward_compact(g, x_hat, gamma, s)
numeric = numerical_grad(bn_forward, x, g)
kernel_dx, kernel_dgamma, kernel_dbeta = batch_norm_backward(g, cache)
print(f"BN backward (compact formula) vs central differences: relative error "
      f"{relative_error(compact, numeric):.1e}")
print(f"compact formula vs kernel batch_norm_backward: max |difference| = "
      f"{np.abs(compact - kernel_dx).max():.1e}")
print(f"dgamma vs sum(dy * x_hat): {np.abs(kernel_dgamma - (g * x_hat).sum(0)).max():.1e}   "
      f"dbeta vs sum(dy): {np.abs(kernel_dbeta - g.sum(0)).max():.1e}")

# %% [markdown]
# The layer as autograd sees it (`F.batch_norm`, training mode, on images this time) passes
# `minires.gradcheck` for the input, γ and β:

# %%
images = minires.tensor(rng.normal(2.0, 3.0, size=(4, 3, 5, 5)), requires_grad=True)
weight = minires.tensor(rng.uniform(0.5, 1.5, 3), requires_grad=True)
bias = minires.tensor(rng.standard_normal(3), requires_grad=True)
report = minires.gradcheck(
    lambda a, w, b: F.batch_norm(a, None, None, w, b, training=True), images, weight, bias)
print(report)
print(f"batch_norm gradcheck passed: {report.passed}   "
      f"max relative error {report.max_relative_error:.1e}")

# %% [markdown]
# ## 4.4 Why the upstream gradient must be random
#
# A tempting shortcut is to check the gradient of $\sum_i y_i$ (upstream gradient all
# ones).  For BatchNorm that gradient is **zero**: shifting every input of a channel does
# not change $\hat x$, and $\sum \hat x = 0$ always.  So any bug that only fails in the
# "all ones" direction is invisible.  Here is one: a backward that forgot the variance
# term $\hat x \sum dy\, \hat x$.

# %%
def bn_backward_buggy(dy, x_hat, gamma, s):
    m = dy.shape[0]
    return (gamma * s / m) * (m * dy - dy.sum(axis=0))  # variance term forgotten


ones = np.ones_like(x)
for name, upstream in [("all-ones", ones), ("random", g)]:
    true = numerical_grad(bn_forward, x, upstream)
    buggy = bn_backward_buggy(upstream, x_hat, gamma, s)
    print(f"{name:8s} upstream: max |true grad| = {np.abs(true).max():.1e}, "
          f"buggy backward's max |error| = {np.abs(buggy - true).max():.1e}")

# %% [markdown]
# With all ones the true gradient is ~0 and the buggy one is 0 too: the check "passes".
# With a random upstream gradient the bug is plain.  That is why `minires.gradcheck`
# draws a random upstream gradient by default.
#
# ## 4.5 Running statistics
#
# At test time the batch may be a single image, so BN cannot use batch statistics.
# During training each BN layer keeps **running averages** (PyTorch's convention,
# `momentum = 0.1`):
#
# $$ \text{running\_mean} \leftarrow 0.9\, \text{running\_mean} + 0.1\, \mu_{\text{batch}},
#    \qquad
#    \text{running\_var} \leftarrow 0.9\, \text{running\_var}
#    + 0.1\, \tfrac{m}{m-1}\, \sigma^2_{\text{batch}} . $$
#
# ($m/(m-1)$ makes the batch variance unbiased.)  We feed `STEPS` batches of 32 samples
# whose features have means (3, −1, 0.5) and standard deviations (2, 0.5, 1).

# %%
true_mean, true_std = np.array([3.0, -1.0, 0.5]), np.array([2.0, 0.5, 1.0])
layer = nn.BatchNorm1d(3)
layer.train()
history = []
for _ in range(STEPS):
    batch = rng.normal(true_mean, true_std, size=(32, 3)).astype(np.float32)
    layer(minires.tensor(batch))
    history.append(layer.running_mean.numpy().copy())
history = np.array(history)
print("running_mean:", np.round(layer.running_mean.numpy(), 3), "  true:", true_mean)
print("running_var: ", np.round(layer.running_var.numpy(), 3), "  true:", true_std**2)
print(f"after 10 steps the initial 0 still weighs 0.9^10 = {0.9**10:.2f}; "
      f"after {STEPS}: {0.9**STEPS:.1e}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
steps = np.arange(1, STEPS + 1)
for c in range(3):
    axes[0].plot(steps, history[:, c], label=f"feature {c} (true {true_mean[c]})")
    axes[0].axhline(true_mean[c], color=f"C{c}", ls=":", lw=1)
axes[0].set_xlabel("training step")
axes[0].set_ylabel("running_mean")
axes[0].set_title("Running mean converges like 1 - 0.9^k")
axes[0].legend(fontsize=8)
many = rng.normal(5.0, 3.0, size=(2000, 1))  # a big batch of one feature, for the picture
many_hat, _ = batch_norm_forward(many, None, None, None, None, training=True)
bins = np.linspace(-6, 16, 56)
axes[1].hist(many[:, 0], bins=bins, alpha=0.6, label="x (mean 5, std 3)")
axes[1].hist(many_hat[:, 0], bins=bins, alpha=0.6, label="x_hat (mean 0, std 1)")
axes[1].set_title("A feature before and after normalising")
axes[1].legend(fontsize=8)
save(fig, "04_batchnorm.png")

# %% [markdown]
# ## 4.6 Train mode vs eval mode
#
# In **train** mode a sample's output depends on the other samples in its batch (they
# set μ and σ²).  In **eval** mode (`layer.eval()`) the running statistics are used: the
# output of a sample depends on that sample alone, and nothing is updated.

# %%
sample = rng.normal(true_mean, true_std, size=(1, 3)).astype(np.float32)
mates_a = rng.normal(true_mean, true_std, size=(7, 3)).astype(np.float32)
mates_b = rng.normal(true_mean, true_std, size=(7, 3)).astype(np.float32) * 2


def output_for_sample(mates):
    batch = minires.tensor(np.concatenate([sample, mates]))
    with minires.no_grad():
        return layer(batch).numpy()[0]


layer.train()
train_a, train_b = output_for_sample(mates_a), output_for_sample(mates_b)
layer.eval()
before = layer.running_mean.numpy().copy()
eval_a, eval_b = output_for_sample(mates_a), output_for_sample(mates_b)
print(f"train mode: same sample, different batch-mates -> outputs differ by "
      f"{np.abs(train_a - train_b).max():.3f}")
print(f"eval mode:  same sample, different batch-mates -> outputs differ by "
      f"{np.abs(eval_a - eval_b).max():.3f}")
unchanged = np.array_equal(before, layer.running_mean.numpy())
print(f"eval mode left running_mean unchanged: {unchanged}")

layer.train()
try:
    layer(minires.tensor(sample))
except ValueError as err:
    print(f"train mode with a batch of one sample: ValueError: {err}")

# %% [markdown]
# (Our second group of batch-mates was scaled by 2, so in train mode it changed μ and σ²
# and with them the sample's output.  The last cell shows why eval mode exists at all:
# one sample has no variance to normalise by.)
#
# ## What you saw
#
# * BN makes every feature mean 0, variance 1 over the batch, then rescales with γ, β.
# * Because μ and σ² depend on every input, the input gradient has two extra terms; the
#   compact formula $\frac{\gamma s}{m}(m\,dy - \sum dy - \hat x \sum dy\,\hat x)$ matched
#   central differences to a relative error far below 1e-6, and matched the kernel.
# * A gradient check with an all-ones upstream gradient cannot see a forgotten variance
#   term; a random one can.
# * Running statistics converge geometrically (weight 0.9 per step) to the data's mean and
#   (unbiased) variance; eval mode uses them, so outputs stop depending on batch-mates.
#
# **Next:** tutorial 5 adds pooling and trains a whole CNN.
#
# | English | 中文 |
# |---|---|
# | batch normalization | 批量归一化 |
# | running mean / variance | 滑动平均 / 方差 |
# | training mode / evaluation mode | 训练模式 / 评估模式 |

# %% [markdown]
# ## Your turn: `batchnorm_backward`
#
# Write BatchNorm's backward pass in training mode.  Per channel, over its `m` values:
# `grad_x = gamma / (m * sqrt(var + eps)) * (m * grad_y - sum(grad_y) - x_hat * sum(grad_y
# * x_hat))`, `grad_gamma = sum(grad_y * x_hat)`, `grad_beta = sum(grad_y)`. Return
# `(grad_x, grad_gamma, grad_beta)`; `x` is `(N, C)` or `(N, C, H, W)`.
#
# Replace `raise NotImplementedError` with your code and run the cell, then run the check
# below. The checker runs your function **in a separate process** on several inputs (edge
# cases and a float32 one), compares it with minires's own kernel and explains the first
# value that differs. It says "not started" until you write something. The full exercise,
# with a longer docstring and hints, is `tutorials/exercises/batchnorm_backward.py`
# (`python -m minires check batchnorm_backward` checks that file).

# %%
def batchnorm_backward(grad_y, x, gamma, eps=1e-5):
    """BatchNorm backward (training mode): return (grad_x, grad_gamma, grad_beta)."""
    raise NotImplementedError  # your code here: see tutorials/exercises/batchnorm_backward.py

# %%
from minires.exercises import check

result = check("batchnorm_backward", batchnorm_backward)
