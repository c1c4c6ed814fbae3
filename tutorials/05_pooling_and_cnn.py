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
# # 5. Pooling and a complete CNN
#
# We now have every piece of a convolutional network: convolution (tutorial 3),
# BatchNorm (4), ReLU, and, today, **pooling**.  Pooling summarises each small window of a
# feature map by one number: its maximum or its mean.  It shrinks the image (a 2×2 window
# with stride 2 halves H and W), so later layers are cheaper and each of their units sees
# a larger part of the input.  It has no weights.
#
# In this tutorial you will
#
# 1. pool a 4×4 example by hand and see where the gradients go,
# 2. meet global average pooling, the head of every ResNet,
# 3. assemble a small CNN, look at its `summary()`, and train it on the embedded MNIST
#    subset for a few hundred steps with a plain training loop,
# 4. plug your own `im2col` and max-pool backward into the layers and check that the CNN
#    trains exactly as with the built-in kernels.

# %% [markdown]
# **Open the source.** `minires/kernels/pool.py`: `max_pool2d_forward` (it returns the
# argmax the backward pass needs), `max_pool2d_backward`, `avg_pool2d_forward` and
# `global_avg_pool_forward`; the small CNN is built from `minires/nn/layers.py`. **In the
# paper** (He et al., *Deep Residual Learning for Image Recognition*, arXiv
# [1512.03385](https://arxiv.org/abs/1512.03385)): §3.3 (Network Architectures), where the
# network "ends with a global average pooling layer and a 1000-way fully-connected layer
# with softmax".

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
from minires import nn, optim
from minires.data import DataLoader, load_mnist
from minires.models import summary
from minires.train import evaluate

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)
minires.manual_seed(0)

STEPS = 40 if SIZE == "small" else 300  # training steps of the CNN
TRAIN_IMAGES = 1000 if SIZE == "small" else 4000  # of the 4,000 embedded training digits
TEST_IMAGES = 200 if SIZE == "small" else 1000


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
# ## 5.1 Max pooling and its gradient
#
# A 2×2 max pool with stride 2 on a 4×4 image: four windows, four outputs.  In the
# backward pass each output's gradient goes **only to the pixel that won its window**
# (the argmax); the other three pixels had no influence on the output, so their
# gradient is 0.  We give the four outputs the upstream gradients 1, 2, 3, 4 to see which
# pixel receives which.

# %%
x = minires.tensor([[[[1.0, 5.0, 2.0, 0.0],
                      [3.0, 4.0, 8.0, 1.0],
                      [0.0, 2.0, 6.0, 7.0],
                      [9.0, 1.0, 3.0, 5.0]]]], requires_grad=True)
upstream = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float32)

y = F.max_pool2d(x, kernel_size=2)
y.backward(upstream)
print("input:\n", x.numpy()[0, 0])
print("max pool 2x2:\n", y.numpy()[0, 0])
print("gradient w.r.t. the input (upstream 1, 2, 3, 4):\n", x.grad.numpy()[0, 0])

# %% [markdown]
# **Predict before you run.** Max-pool a random 6×6 image with a 2×2 window and stride 2
# and send an upstream gradient of 1 to every output. How many of the 36 input pixels
# receive a non-zero gradient?

# %%
image = minires.tensor(np.random.default_rng(5).standard_normal((1, 1, 6, 6)), requires_grad=True)
F.max_pool2d(image, kernel_size=2).sum().backward()
winners = int((image.grad.numpy() != 0).sum())
print(f"pixels with a gradient: {winners} of 36")

# %%
assert winners == 9  # (6 // 2) ** 2 windows, one winner each (random values: no ties)
print("✓ one pixel per window: 9 of 36 get the gradient, the other 27 get exactly 0")

# %% [markdown]
# ## 5.2 Average pooling and global average pooling
#
# Average pooling takes the mean, so every pixel of a window gets an equal share (1/4)
# of the window's gradient.

# %%
x.zero_grad()
y_avg = F.avg_pool2d(x, kernel_size=2)
y_avg.backward(upstream)
print("average pool 2x2:\n", y_avg.numpy()[0, 0])
print("gradient w.r.t. the input:\n", x.grad.numpy()[0, 0])

# %% [markdown]
# **Global average pooling** is one window covering the whole map: every channel becomes
# a single number.  A ResNet ends with it, so the classifier reads a vector of C channel
# means whatever the image size, instead of a huge flattened map.

# %%
maps = minires.randn(2, 3, 7, 7)
pooled = F.global_avg_pool2d(maps)
print(f"global average pooling: {maps.shape} -> {pooled.shape}")
print(f"pooled[0, 0] = {pooled.numpy()[0, 0]:.6f}, mean of maps[0, 0] = "
      f"{maps.numpy()[0, 0].mean():.6f}")
check = minires.gradcheck(lambda t: F.max_pool2d(t, 2),
                          minires.randn(2, 2, 6, 6, dtype="float64", requires_grad=True))
print(f"max_pool2d gradcheck passed: {check.passed}")

# %% [markdown]
# ## 5.3 A small CNN
#
# Two "convolution → BatchNorm → ReLU → max pool" stages, then a linear classifier:
#
# ```
# 1×28×28 ─conv 3×3, 8─BN─ReLU─pool─▶ 8×14×14 ─conv 3×3, 16─BN─ReLU─pool─▶ 16×7×7
#         ─flatten─linear─▶ 10 scores
# ```
#
# The convolutions have no bias because the BatchNorm right after them has its own β.
# `summary()` runs one zero image through the model with forward hooks and lists every
# layer's output shape, parameters and multiply-adds.

# %%
def small_cnn():
    """The CNN drawn above: a fresh one, with new random weights, on every call."""
    return nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 10),
    )


model = small_cnn()
info = summary(model, (1, 28, 28))

# %% [markdown]
# ## 5.4 Training it
#
# The embedded MNIST subset ships with minires (4,000 training and 1,000 test digits,
# normalised).  The training loop is the same five lines as in PyTorch: forward, loss,
# `zero_grad`, `backward`, `step`.  SGD with momentum 0.9 and learning rate 0.05.

# %%
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
train_loader = DataLoader((x_train[:TRAIN_IMAGES], y_train[:TRAIN_IMAGES]), batch_size=64,
                          shuffle=True, seed=0)
test_loader = DataLoader((x_test[:TEST_IMAGES], y_test[:TEST_IMAGES]), batch_size=250)
optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

losses, step, start = [], 0, time.perf_counter()
model.train()
while step < STEPS:
    for images, labels in train_loader:
        loss = F.cross_entropy(model(minires.tensor(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % max(1, STEPS // 6) == 0:
            print(f"step {step:4d}  loss {np.mean(losses[-10:]):.4f}")
        if step == STEPS:
            break
seconds = time.perf_counter() - start
test_loss, test_error = evaluate(model, test_loader)
first, last = np.mean(losses[:10]), np.mean(losses[-10:])
print(f"trained {STEPS} steps in {seconds:.1f} s")
print(f"training loss fell from {first:.3f} to {last:.3f}")
print(f"test error {test_error:.2%} on {TEST_IMAGES} test digits (chance: 90%)")

# %% [markdown]
# ## 5.5 What did it learn?
#
# Left: the loss per step (noisy, because each step sees a different batch) and its
# running mean.  Right: the eight feature maps of the first stage for one test digit.
# We record them with a **forward hook**, a function the layer calls with its output
# after every forward pass.  Each map highlights different strokes or edges.

# %%
recorded = []
handle = model[2].register_forward_hook(lambda module, inputs, out: recorded.append(out.numpy()))
model.eval()
with minires.no_grad():
    model(minires.tensor(x_test[:1]))
handle.remove()
feature_maps = recorded[0][0]  # (8, 28, 28): after the first ReLU

fig = plt.figure(figsize=(13, 3.6))
grid = fig.add_gridspec(2, 8)
ax = fig.add_subplot(grid[:, :3])
ax.plot(losses, alpha=0.35, label="loss per step")
window = min(20, len(losses))
smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
ax.plot(np.arange(window - 1, len(losses)), smooth, label=f"mean of {window} steps")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy")
ax.set_title("Training loss")
ax.legend()
ax = fig.add_subplot(grid[:, 3])
ax.imshow(x_test[0, 0], cmap="gray")
ax.set_title(f"input: digit {y_test[0]}")
ax.axis("off")
for k in range(8):
    ax = fig.add_subplot(grid[k // 4, 4 + k % 4])
    ax.imshow(feature_maps[k], cmap="magma")
    ax.set_title(f"map {k}", fontsize=8)
    ax.axis("off")
save(fig, "05_cnn_training.png")

# %% [markdown]
# ## 5.6 Your kernels inside the network
#
# Every layer above reaches its kernels through one seam, `minires/kernels/routing.py`:
# the convolution calls `im2col`, the max pool's backward pass calls
# `max_pool2d_backward`.  Inside
# `with minires.kernels.use(im2col=mine, max_pool2d_backward=also_mine):` the layers call
# *your* functions instead (with the signatures of the exercises in
# `tutorials/exercises/`), and on leaving the `with` block the built-in ones come back.
# Below are two simple kernels written straight from their formulas, loops and all; we
# train a fresh copy of the CNN for a few steps twice, from the same seed on the same
# batches, once with the built-in kernels and once with ours.  If ours are right, the two
# runs give the same losses, step by step, up to rounding (we train in float64 here, so
# rounding is ~1e-15: the fast built-in kernels add in a different order than ours).

# %%
calls = {"my_im2col": 0, "my_max_pool_backward": 0}  # only to show that the layers call them


def my_im2col(x, kernel_h, kernel_w, stride, padding):
    """cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = x_pad[n, c, oh*stride + i, ow*stride + j]"""
    calls["my_im2col"] += 1
    n, c, h, w = x.shape
    oh = (h + 2 * padding - kernel_h) // stride + 1
    ow = (w + 2 * padding - kernel_w) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.zeros((n, oh, ow, kernel_h, kernel_w, c), dtype=x.dtype)
    for i in range(kernel_h):
        for j in range(kernel_w):  # kernel pixel (i, j) of every window at once
            patch = x_pad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            cols[:, :, :, i, j, :] = patch.transpose(0, 2, 3, 1)  # (N, OH, OW, C)
    return cols.reshape(n * oh * ow, kernel_h * kernel_w * c)


def my_max_pool_backward(grad_y, x, kernel_size, stride, padding=0):
    """grad_x: each output's gradient goes to its window's first maximum (overlaps add)."""
    calls["my_max_pool_backward"] += 1
    n, c, h, w = x.shape
    k = kernel_size
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                   constant_values=-np.inf)
    grad = np.zeros(x_pad.shape, dtype=grad_y.dtype)
    for b in range(n):
        for ch in range(c):
            for p in range(grad_y.shape[2]):
                for q in range(grad_y.shape[3]):
                    window = x_pad[b, ch, p * stride:p * stride + k, q * stride:q * stride + k]
                    i, j = divmod(int(np.argmax(window)), k)  # argmax: the first maximum
                    grad[b, ch, p * stride + i, q * stride + j] += grad_y[b, ch, p, q]
    return grad[:, :, padding:padding + h, padding:padding + w]


def train_a_few_steps(steps=8, batch_size=32):
    """The losses of `steps` SGD steps of a fresh small_cnn(), always from the same seed,
    in float64: rounding then moves a loss by ~1e-15, and a real bug by far more."""
    minires.manual_seed(1)
    with minires.default_dtype(np.float64):
        net = small_cnn()
        sgd = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        step_losses = []
        for k in range(steps):
            rows = slice(k * batch_size, (k + 1) * batch_size)  # the same batches every time
            images = minires.tensor(x_train[rows].astype(np.float64))
            loss = F.cross_entropy(net(images), y_train[rows])
            sgd.zero_grad()
            loss.backward()
            sgd.step()
            step_losses.append(loss.item())
    return np.array(step_losses)


built_in = train_a_few_steps()
with minires.kernels.use(im2col=my_im2col, max_pool2d_backward=my_max_pool_backward):
    yours = train_a_few_steps()
print("step  built-in kernels  your kernels")
for k, (a, b) in enumerate(zip(built_in, yours, strict=True), start=1):
    print(f"{k:4d}  {a:16.10f}  {b:12.10f}")
print(f"your kernels ran: my_im2col {calls['my_im2col']} times, "
      f"my_max_pool_backward {calls['my_max_pool_backward']} times")
print(f"largest relative difference of the losses: {np.max(np.abs(yours / built_in - 1)):.1e}")

# %%
assert calls["my_im2col"] > 0 and calls["my_max_pool_backward"] > 0  # they really ran
assert np.allclose(yours, built_in, rtol=1e-10, atol=0)  # float64 rounding, nothing more
print(f"✓ your im2col and max-pool backward train the CNN as the built-in kernels do "
      f"({len(yours)} steps, losses equal to rtol 1e-10)")

# %% [markdown]
# **Now break one on purpose** and run the two cells again: in `my_max_pool_backward`,
# send the gradient to `(p * stride + j, q * stride + i)` (i and j swapped).  The losses
# diverge and the check fails, but look at step 1 first: does the first loss change?
# Why not?  (Once you have written the "Your turn" function at the end, plug *it* in.)

# %% [markdown]
# ## What you saw
#
# * Max pooling sends each window's gradient to its winner only; average pooling splits
#   it equally.  Neither has weights.
# * Global average pooling turns C feature maps into C numbers: the ResNet head.
# * A two-stage CNN (~10k parameters) learned to read digits within a few hundred steps;
#   the training loss fell and the test error ended far below the 90% of guessing.
# * Forward hooks let you look at any layer's output without changing the model.
# * `minires.kernels.use(...)` runs your own kernels inside the real layers; the same
#   training losses as the built-in kernels say they are right.
#
# **Next:** tutorial 6 makes this kind of network *much* deeper, and finds that deeper is
# not automatically better.
#
# | English | 中文 |
# |---|---|
# | pooling (max / average) | 池化（最大 / 平均） |
# | global average pooling | 全局平均池化 |
# | feature map | 特征图 |
# | forward hook | 前向钩子 |

# %% [markdown]
# ## Your turn: `max_pool2d_backward`
#
# Write the gradient of max pooling with respect to its input `x` `(N, C, H, W)`: each
# output's gradient goes to the position of its window's maximum (the FIRST one in
# row-major order when several tie), and overlapping windows ADD their gradients. Return
# `grad_x`.
#
# Replace `raise NotImplementedError` with your code and run the cell, then run the check
# below. The checker runs your function **in a separate process** on several inputs (edge
# cases and a float32 one), compares it with minires's own kernel and explains the first
# value that differs. It says "not started" until you write something. The full exercise,
# with a longer docstring and hints, is `tutorials/exercises/max_pool_backward.py`
# (`python -m minires check max_pool_backward` checks that file).

# %%
def max_pool2d_backward(grad_y, x, kernel_size, stride, padding=0):
    """grad_x of max pooling: each output's gradient goes to its window's (first) maximum."""
    raise NotImplementedError  # your code here: see tutorials/exercises/max_pool_backward.py

# %%
from minires.exercises import check

result = check("max_pool_backward", max_pool2d_backward)
