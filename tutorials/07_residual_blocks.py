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
# # 7. Residual blocks and identity mappings
#
# Tutorial 6 ended with a puzzle: 56 layers could copy what 20 layers do (make the extra
# 36 compute the identity), yet SGD does not find that solution.  He et al.'s answer:
# do not ask the layers to **be** the mapping $H(x)$; ask them for the **residual**
# $F(x) = H(x) - x$ and add $x$ back through a shortcut:
#
# $$ y = \operatorname{relu}\big(F(x) + x\big), \qquad
#    F(x) = \mathrm{BN}(\mathrm{conv}(\mathrm{relu}(\mathrm{BN}(\mathrm{conv}(x))))) . $$
#
# If the identity is (nearly) what a block should do, pushing $F$ towards 0 is easy:
# shrink some weights.  Making a stack of nonlinear layers *imitate* the identity is not.
#
# In this tutorial you will
#
# 1. verify $y = \operatorname{relu}(F(x) + x)$ inside a real `BasicBlock`,
# 2. set the last BN's γ to zero and get an **exact** identity, even through 27 blocks,
# 3. see what the shortcut does to gradients in a deep stack,
# 4. compare the shortcut options A, B and C and their parameter counts.

# %% [markdown]
# **Open the source.** `minires/models/blocks.py`: `BasicBlock.forward` (one line for the
# shortcut, $y = \mathrm{relu}(F(x) + x)$), `make_shortcut` and `PadShortcut` (options A,
# B and C). **In the paper** (He et al., *Deep Residual Learning for Image Recognition*,
# arXiv [1512.03385](https://arxiv.org/abs/1512.03385)): §3.1 (Residual Learning), §3.2
# (Identity Mapping by Shortcuts, Eq. 1 and 2), Fig. 2 (the block), §4.1 "Identity vs.
# Projection Shortcuts" (options A/B/C, Table 3).

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
from minires import models, nn
from minires.models import BasicBlock, count_parameters

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)
minires.manual_seed(0)
rng = np.random.default_rng(0)

BLOCKS = 9 if SIZE == "small" else 27  # blocks in the stacks of sections 7.2 and 7.3
CHANNELS = 8 if SIZE == "small" else 16


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
# ## 7.1 Looking inside a BasicBlock
#
# ```
#     x ─┬─ conv3x3 ─ bn1 ─ relu ─ conv3x3 ─ bn2 ─(+)─ relu ─> y
#        └──────────────── identity ──────────────┘
# ```
#
# `F(x)` is the output of `bn2`.  A **forward hook** on `bn2` records it, and we rebuild
# the block's output from it by hand.  The input is non-negative, as it is inside a
# ResNet (it is the output of the previous block's final ReLU).

# %%
x = minires.tensor(np.maximum(rng.standard_normal((4, CHANNELS, 8, 8)), 0).astype(np.float32))
block = BasicBlock(CHANNELS, CHANNELS)
print(block)

recorded = []
handle = block.bn2.register_forward_hook(lambda module, inputs, out: recorded.append(out))
y = block(x)
handle.remove()
residual = recorded[0]
rebuilt = np.maximum(residual.numpy() + x.numpy(), 0)
print(f"max |block(x) - relu(F(x) + x)| = {np.abs(y.numpy() - rebuilt).max():.1e}")
print(f"std of x {x.numpy().std():.3f}, of F(x) {residual.numpy().std():.3f}, "
      f"of y {y.numpy().std():.3f}")

# %% [markdown]
# ## 7.2 Zero-init γ: an exact identity
#
# BN's output is $\gamma \hat x + \beta$.  If the last BN of the branch starts with
# $\gamma = 0$ (and $\beta = 0$, its default), then $F(x) = 0$ **exactly**, whatever the
# convolutions' weights, and the block computes $\operatorname{relu}(0 + x) = x$ for
# $x \ge 0$.  This is `zero_init_residual=True` (Goyal et al. 2017, also in torchvision).
# A freshly built deep ResNet then *starts* as the identity and its blocks switch on
# gradually as γ grows during training.

# %%
identity_block = BasicBlock(CHANNELS, CHANNELS, zero_init_residual=True)
print(f"bn2.weight (gamma) = {identity_block.bn2.weight.numpy()}")
out = identity_block(x)
print(f"one zero-init block: identity max |out - in| = {np.abs(out.numpy() - x.numpy()).max()}")

stack = nn.Sequential(*[BasicBlock(CHANNELS, CHANNELS, zero_init_residual=True)
                        for _ in range(BLOCKS)])
out = stack(x)
print(f"{BLOCKS} zero-init blocks: identity max |out - in| = "
      f"{np.abs(out.numpy() - x.numpy()).max()}")

# %% [markdown]
# **Predict, then check.** The cell above built blocks whose last γ is 0. For an input $x
# \ge 0$, what is the largest difference between `block(x)` and `x`: about $10^{-3}$,
# about $10^{-7}$ (rounding), or exactly 0?

# %%
gap = np.abs(stack(x).numpy() - x.numpy()).max()
assert float(x.numpy().min()) >= 0 and gap == 0.0
print(f"✓ exactly 0 ({gap}): F(x) = 0 * x_hat + 0 = 0 and relu(0 + x) = x for x >= 0")

# %% [markdown]
# The same trick in a **plain** block (no shortcut) is a disaster: $\gamma = 0$ makes
# $y = \operatorname{relu}(0) = 0$, every input is mapped to zero and all information is
# lost.  A plain block has no cheap way to be the identity; with its default
# initialisation its output is simply different from its input.

# %%
plain_zero = BasicBlock(CHANNELS, CHANNELS, residual=False, zero_init_residual=True)
plain_default = BasicBlock(CHANNELS, CHANNELS, residual=False)
print(f"plain block, gamma = 0:      max |out| = {np.abs(plain_zero(x).numpy()).max()}")
change = np.linalg.norm(plain_default(x).numpy() - x.numpy()) / np.linalg.norm(x.numpy())
print(f"plain block, default init:  ||out - in|| / ||in|| = {change:.2f}")

# %% [markdown]
# ## 7.3 What the shortcut does to gradients
#
# Before the final ReLU a residual block is $x + F(x)$, so its Jacobian is
# $I + \partial F/\partial x$: the gradient has a **direct path** through every block.
# Through $K$ blocks the product $\prod_k (I + \partial F_k/\partial x)$ always contains
# the plain identity term, whereas a plain stack has only $\prod_k \partial F_k/\partial x$,
# which can shrink or blow up with $K$.
#
# We stack `BLOCKS` blocks, send a random gradient into the top and record the gradient
# norm $\lVert \partial L / \partial x_k \rVert$ at the input of every block
# (`retain_grad()` keeps `.grad` of intermediate tensors).  We plot it relative to the
# top block's, so 1 means "arrives unchanged".

# %%
def gradient_profile(**options):
    minires.manual_seed(0)
    blocks = [BasicBlock(CHANNELS, CHANNELS, **options) for _ in range(BLOCKS)]
    h = minires.tensor(x.numpy(), requires_grad=True)
    inputs = []
    for b in blocks:
        h.retain_grad()
        inputs.append(h)
        h = b(h)
    upstream = rng.standard_normal(h.shape).astype(np.float32)
    h.backward(upstream)
    norms = np.array([np.linalg.norm(t.grad.numpy()) for t in inputs])
    return norms / norms[-1]


profiles = {
    "plain": gradient_profile(residual=False),
    "residual": gradient_profile(),
    "residual, zero-init γ": gradient_profile(zero_init_residual=True),
}
for name, profile in profiles.items():
    print(f"{name:22s}: gradient at block 1 / at block {BLOCKS} = {profile[0]:.3g}")

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, profile in profiles.items():
    ax.semilogy(np.arange(1, BLOCKS + 1), profile, "o-", ms=3, label=name)
ax.set_xlabel("block k (1 = nearest the input)")
ax.set_ylabel("‖∂L/∂x_k‖ relative to the top block")
ax.set_title(f"Gradients through {BLOCKS} blocks at initialisation (train mode)")
ax.legend()
save(fig, "07_gradient_through_blocks.png")

# %% [markdown]
# In the plain stack the gradient changes by orders of magnitude from the top to the
# bottom (with BatchNorm it *grows* towards the input, the same effect as in tutorial 6):
# every block rescales it.  The residual stack changes it far less, and with zero-init γ
# it arrives **exactly unchanged**: ratio 1.
#
# ## 7.4 Shortcut options A, B and C
#
# Where a block changes the shape (first block of a stage: stride 2 halves H and W and
# the channels double), $x$ cannot be added to $F(x)$ as it is.  The paper (section 3.3)
# compares three shortcuts:
#
# * **A**: subsample `x[:, :, ::2, ::2]` and pad the extra channels with **zeros**:
#   no parameters (the paper's CIFAR nets);
# * **B**: a **projection** (1×1 convolution + BN) where the shape changes, the
#   identity elsewhere (torchvision's choice);
# * **C**: a projection on **every** block.
#
# Option A's shortcut on a 16-channel input going to 32 channels with stride 2:

# %%
down = BasicBlock(16, 32, stride=2, shortcut="A")
x16 = minires.tensor(rng.standard_normal((1, 16, 8, 8)).astype(np.float32))
shortcut = down.downsample(x16)
print(f"option A shortcut: {x16.shape} -> {shortcut.shape}")
print(f"  channels 0-15 equal x[:, :, ::2, ::2]: "
      f"{np.array_equal(shortcut.numpy()[:, :16], x16.numpy()[:, :, ::2, ::2])}")
print(f"  channels 16-31 are all zero: {not shortcut.numpy()[:, 16:].any()}")

# %% [markdown]
# Parameters per block, and for the whole ResNet-20 (paper widths 16, 32, 64):

# %%
print(f"{'shortcut':8s} {'16->32, stride 2':>17s} {'32->32, stride 1':>17s} {'ResNet-20':>10s}")
totals = {}
for option in ("A", "B", "C"):
    changing = BasicBlock(16, 32, stride=2, shortcut=option).num_parameters()
    keeping = BasicBlock(32, 32, stride=1, shortcut=option).num_parameters()
    totals[option] = count_parameters(models.get_model("resnet20", shortcut=option))
    print(f"option {option:2s} {changing:17,d} {keeping:17,d} {totals[option]:10,d}")
plain_total = count_parameters(models.get_model("plain20"))
print(f"plain-20 has {plain_total:,} parameters: the same as ResNet-20 with option A "
      f"({plain_total == totals['A']})")

# %% [markdown]
# Option A adds nothing, so a ResNet with option A and its plain twin have **exactly**
# the same parameters: tutorial 6's comparison of plain-56 and ResNet-56 was fair.
# In the paper (Table 3, ImageNet) B is slightly better than A (the zero-padded channels
# learn no residual) and C slightly better than B, but the differences are small:
# projections are **not essential** for solving degradation; the identity is.
#
# ## What you saw
#
# * A BasicBlock computes exactly $\operatorname{relu}(F(x) + x)$, with $F(x)$ the last BN's
#   output.
# * With γ = 0 in that BN the block is an **exact identity** (max |out − in| = 0), even
#   through a stack of blocks; a plain block with γ = 0 outputs zeros.
# * The shortcut gives the gradient a direct path: through a deep stack it changes far
#   less than through a plain stack, which rescales it by orders of magnitude (with
#   zero-init γ it arrives exactly unchanged).
# * Option A costs no parameters; B adds a 1×1 projection where the shape changes (576
#   parameters for 16 → 32 channels), C on every block (1,088 more per 32 → 32 block).
#
# **Next:** tutorial 8 assembles a whole ResNet-20, trains it and looks at its layers.
#
# | English | 中文 |
# |---|---|
# | residual | 残差 |
# | residual block | 残差块 |
# | identity mapping | 恒等映射 |
# | shortcut connection | 捷径连接（快捷连接） |
# | projection shortcut | 投影捷径 |

# %% [markdown]
# ## Your turn: `basic_block_forward`
#
# Write the forward pass of the paper's BasicBlock on NumPy arrays, with the option A
# shortcut: `y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, BatchNorm in
# training mode. When the block halves the map (stride 2), the shortcut takes every second
# pixel and appends zero channels. The kernels `conv2d_forward`, `batch_norm_forward` and
# `relu_forward` may help.
#
# Replace `raise NotImplementedError` with your code and run the cell, then run the check
# below. The checker runs your function **in a separate process** on several inputs (edge
# cases and a float32 one), compares it with minires's own kernel and explains the first
# value that differs. It says "not started" until you write something. The full exercise,
# with a longer docstring and hints, is `tutorials/exercises/basic_block_forward.py`
# (`python -m minires check basic_block_forward` checks that file).
#
# The kernels you may use (import them in your cell):
#
#     from minires.kernels.activation import relu_forward
#     from minires.kernels.conv import conv2d_forward
#     from minires.kernels.norm import batch_norm_forward

# %%
def basic_block_forward(x, conv1_weight, bn1_gamma, bn1_beta, conv2_weight, bn2_gamma,
                        bn2_beta, stride=1):
    """The BasicBlock's forward pass, option A shortcut: return y."""
    raise NotImplementedError  # your code here: see tutorials/exercises/basic_block_forward.py

# %%
from minires.exercises import check

result = check("basic_block_forward", basic_block_forward)
