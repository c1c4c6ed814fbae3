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
# # 6. The degradation problem
#
# If 20 layers are good, are 56 better?  A deeper network can represent everything a
# shallower one can: copy the 20 layers and make the other 36 compute the identity.  So
# its *training* error should never be higher.  He et al. (2016, Fig. 1) found the
# opposite: a 56-layer "plain" network had higher training **and** test error than a
# 20-layer one.  They called this the **degradation problem** (退化问题).
#
# Two explanations do not fit:
#
# * **overfitting**: that would make the *test* error worse while the training error
#   improves; here the training error itself is worse;
# * **vanishing gradients**: these networks use BatchNorm and He initialisation, and we
#   will measure that the gradient reaching the first layer is not small.
#
# What is left is an **optimisation** difficulty: SGD finds it hard to make a deep stack of
# nonlinear layers behave well (for instance, to approximate the identity).
#
# In this tutorial you will train plain-20 and plain-56 (the CIFAR architectures of the
# paper, made narrow) on a subset of MNIST for a few epochs and compare training curves.

# %% [markdown]
# **Open the source.** `minires/models/cifar.py`: `plain20`, `plain56` and `CifarResNet`,
# the CIFAR networks of the paper ($6n + 2$ layers); `minires/train.py`:
# `paper_cifar_recipe` (SGD, momentum 0.9, weight decay 1e-4, the step schedule). **In the
# paper** (He et al., *Deep Residual Learning for Image Recognition*, arXiv
# [1512.03385](https://arxiv.org/abs/1512.03385)): Fig. 1 and §1, where the degradation
# problem is introduced; §4.1 (Table 2, Fig. 4 left: plain-18 vs plain-34 on ImageNet);
# §4.2 (Fig. 6 left: plain nets on CIFAR-10).

# %%
import os
import sys
import time
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script: draw into files, never open windows
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import minires
from minires import functional as F
from minires import models, nn
from minires.data import DataLoader, downsample, load_mnist
from minires.train import paper_cifar_recipe

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)

IMAGES = 320 if SIZE == "small" else 1024  # training digits
EPOCHS = 4 if SIZE == "small" else 10
BATCH = 32
WIDTHS = (4, 8, 16)  # channels of the three stages; the paper uses (16, 32, 64)
SEED = 0


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
# ## 6.1 The data and the networks
#
# To keep this fast on a laptop CPU we average 2×2 blocks of pixels (`downsample`: 28×28 →
# 14×14; the digits stay readable, as in the quick demonstrations), use `IMAGES` training
# digits and narrow stages.  The networks
# are the paper's CIFAR plain nets: a 3×3 convolution, then three stages of $n$ blocks of
# two 3×3 convolutions each (each followed by BatchNorm and ReLU), global average pooling
# and a linear layer: $6n + 2$ layers with weights, so $n = 3$ gives 20 and $n = 9$ gives 56.

# %%
x_all, y_all = load_mnist("train")
x = downsample(x_all[:IMAGES], 2)
y = y_all[:IMAGES]
print(f"training set: {x.shape[0]} digits of {x.shape[2]}x{x.shape[3]}")

for name in ("plain20", "plain56"):
    model = models.get_model(name, in_channels=1, widths=WIDTHS)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    print(f"{name}: {convs} conv layers + 1 linear = {convs + 1} layers with weights, "
          f"{model.num_parameters():,} parameters")

# %% [markdown]
# **Predict before you run.** The CIFAR networks have $6n + 2$ layers with weights: one
# 3×3 convolution, three stages of $n$ blocks of two 3×3 convolutions, and the final
# linear layer. How many `Conv2d` layers does plain-56 contain?

# %%
n = 9  # plain-56: 6n + 2 = 56
plain56 = models.get_model("plain56", in_channels=1, widths=WIDTHS)
conv_layers = sum(isinstance(m, nn.Conv2d) for m in plain56.modules())
print(f"plain-56 has {conv_layers} Conv2d layers")

# %%
assert conv_layers == 1 + 3 * n * 2 == 55
print("✓ 1 + 3 stages x 9 blocks x 2 = 55 convolutions, + 1 linear layer = 56")

# %% [markdown]
# ## 6.2 Gradients do not vanish here
#
# Before training, one batch forward and backward: the gradient norm of the first and of
# the last convolution.  If vanishing gradients were the problem, the first layer's
# gradient would be tiny in plain-56.  It is not: it is **larger** (with BatchNorm, a
# deep plain net's gradients tend to grow towards the input).  Whatever goes wrong, it is
# not that the first layers receive no signal.

# %%
def conv_gradient_norms(name):
    minires.manual_seed(SEED)
    model = models.get_model(name, in_channels=1, widths=WIDTHS)
    F.cross_entropy(model(minires.tensor(x[:64])), y[:64]).backward()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return [float(np.linalg.norm(c.weight.grad.numpy())) for c in convs]


for name in ("plain20", "plain56"):
    norms = conv_gradient_norms(name)
    print(f"{name} at initialisation: ||dL/dW|| first conv {norms[0]:.2e}, "
          f"last conv {norms[-1]:.2e}")

# %% [markdown]
# ## 6.3 Training both
#
# The paper's recipe: SGD, learning rate 0.1, momentum 0.9, weight decay 1e-4, the rate
# divided by 10 at 50% and 75% of training (`paper_cifar_recipe`).  Same data order,
# same seed for both.  We record the loss and error of every training batch as it is
# trained on, which is how the paper draws its training curves.
#
# This is the long cell (a minute or two at the normal size): a progress bar shows each
# network's steps and its latest loss.
#
# As a preview of tutorial 7 we also train **ResNet-56**: exactly plain-56's layers plus
# identity shortcuts (option A, no extra parameters).

# %%
def progress_bar(total, name):
    """A tqdm progress bar, or None when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=name, unit="step")


def train(name):
    minires.manual_seed(SEED)
    model = models.get_model(name, in_channels=1, widths=WIDTHS)
    loader = DataLoader((x, y), BATCH, shuffle=True, drop_last=True, seed=SEED)
    optimizer, scheduler = paper_cifar_recipe(model, len(loader), EPOCHS)
    losses, errors, start = [], [], time.perf_counter()
    bar = progress_bar(EPOCHS * len(loader), name)
    model.train()
    for epoch in range(EPOCHS):
        for images, labels in loader:
            logits = model(minires.tensor(images))
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            errors.append(float(np.mean(logits.numpy().argmax(axis=1) != labels)))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if bar is None:  # no tqdm: one line per epoch
            print(f"  {name} epoch {epoch + 1}/{EPOCHS}: mean loss "
                  f"{np.mean(losses[-len(loader):]):.3f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    print(f"{name}: {len(losses)} steps in {seconds:.1f} s")
    return np.array(losses), np.array(errors)


runs = {name: train(name) for name in ("plain20", "plain56", "resnet56")}

# %%
last = max(1, len(runs["plain20"][0]) // 5)  # the last 20% of the steps
print(f"training loss and error over the last {last} steps (mean):")
for name, (losses, errors) in runs.items():
    print(f"  {name:8s} loss {losses[-last:].mean():.3f}   error {errors[-last:].mean():.1%}")
p20, p56 = runs["plain20"][1][-last:].mean(), runs["plain56"][1][-last:].mean()
print(f"plain-56 training error {p56:.1%} vs plain-20 {p20:.1%}: "
      f"{'deeper is WORSE (degradation)' if p56 > p20 else 'no degradation this time'}")

# %%
def smooth(values, window):
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
styles = {"plain20": ("C0", "-"), "plain56": ("C3", "-"), "resnet56": ("C2", "--")}
window = max(5, len(runs["plain20"][0]) // 15)
for name, (losses, errors) in runs.items():
    color, ls = styles[name]
    steps = np.arange(window, len(losses) + 1)
    axes[0].plot(steps, smooth(losses, window), color=color, ls=ls, label=name)
    axes[1].plot(steps, 100 * smooth(errors, window), color=color, ls=ls, label=name)
axes[0].set_ylabel("training loss")
axes[1].set_ylabel("training error (%)")
for ax in axes:
    ax.set_xlabel("iteration")
    ax.legend()
fig.suptitle(f"Plain nets on {IMAGES} MNIST digits (running mean of {window} batches)")
save(fig, "06_degradation_curves.png")

# %% [markdown]
# ## Reading the curves
#
# At the normal size (1,024 digits, 10 epochs) plain-56 ends with a much higher
# **training** error than plain-20 (in our runs plain-56 stayed above 70% while plain-20
# went below 20%, and ResNet-56 below 5%), although plain-56 has three times the
# parameters and could in principle copy plain-20 exactly.  The extra depth makes the
# network harder to *optimise*; it is not memorising too much.  ResNet-56, the same 56
# layers with shortcuts, trains best of the three.
#
# Our runs are tiny, so the gap is far larger than in the paper's Fig. 1 (a few
# percentage points of CIFAR-10 training error after 64k iterations), and it varies with
# the seed; the ordering is what matters.  At `SIZE = "small"` the runs are too short to
# show anything reliably: they only check that the code works.
#
# ## What you saw
#
# * A deeper plain network trained **worse** than a shallower one, on the training set
#   itself: degradation is not overfitting.
# * Its first layer did not starve for gradient (the gradient norm was larger, not
#   smaller), so vanishing gradients do not explain it either.
# * Adding identity shortcuts to the same 56 layers removed the problem.
#
# **Next:** tutorial 7 opens up the residual block and explains why the shortcut helps.
#
# | English | 中文 |
# |---|---|
# | degradation problem | 退化问题 |
# | plain network | 普通网络（无捷径） |
# | overfitting | 过拟合 |
# | optimisation difficulty | 优化困难 |

# %% [markdown]
# ## Your turn: `sgd_momentum_step`
#
# Write one step of the paper's optimiser, with PyTorch's formulas: `g = grad +
# weight_decay * param`; `buf = g` on the first step (`momentum_buffer` is None), else
# `buf = momentum * momentum_buffer + g`; `param = param - lr * buf`. Return `(param,
# buf)` as new arrays, leaving the inputs unchanged.
#
# Replace `raise NotImplementedError` with your code and run the cell, then run the check
# below. The checker runs your function **in a separate process** on several inputs (edge
# cases and a float32 one), compares it with minires's own kernel and explains the first
# value that differs. It says "not started" until you write something. The full exercise,
# with a longer docstring and hints, is `tutorials/exercises/sgd_momentum.py` (`python -m
# minires check sgd_momentum` checks that file).

# %%
def sgd_momentum_step(param, grad, momentum_buffer, lr, momentum, weight_decay):
    """One SGD step with momentum and weight decay: return (new param, new buffer)."""
    raise NotImplementedError  # your code here: see tutorials/exercises/sgd_momentum.py

# %%
from minires.exercises import check

result = check("sgd_momentum", sgd_momentum_step)
