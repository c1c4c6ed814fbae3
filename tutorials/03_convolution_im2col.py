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
# # 3. Convolution as a matrix product
#
# A convolution slides a small filter over the image and takes a dot product at every
# position.  Written as loops, that is slow in Python.  But "many dot products of many
# vectors with many vectors" is a **matrix product**, which BLAS on a CPU (or cuBLAS on a
# GPU) runs near the machine's peak.  The trick that turns one into the other is
# **im2col** ("image to columns"): copy every receptive field into one row of a matrix.
#
# In this tutorial you will
#
# 1. build the im2col matrix of a 4×4 image by hand and print it,
# 2. convolve with one matrix product and check it against a plain loop,
# 3. see why minires lays the columns out "channels last",
# 4. meet **col2im**, the adjoint of im2col, and use it for the backward pass,
# 5. time the naive loop against the fast kernel.
#
# The kernels live in `minires/kernels/conv.py`; everything here calls its public
# functions `im2col`, `col2im`, `weight_to_matrix`, `conv2d_naive`, `conv2d_forward` and
# `conv2d_backward`, which work on plain NumPy arrays (no autograd).

# %% [markdown]
# **Open the source.** `minires/kernels/conv.py`: `im2col` (one screen, with the layout in
# its docstring), `col2im`, `conv2d_forward` and `conv2d_backward` (one matrix product
# each), and `conv2d_naive`, the loops they are tested against. **In the paper** (He et
# al., *Deep Residual Learning for Image Recognition*, arXiv
# [1512.03385](https://arxiv.org/abs/1512.03385)): §3.3 (Network Architectures), where the
# networks are built from 3×3 convolutions and downsample with stride-2 convolutions.

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
from minires.kernels.conv import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv2d_naive,
    im2col,
    weight_to_matrix,
)

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)
minires.manual_seed(0)
rng = np.random.default_rng(0)
np.set_printoptions(linewidth=110)


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
# ## 3.1 A 4×4 image and a 3×3 filter
#
# Images come as `(N, C, H, W)`: batch, channels, height, width.  Our image holds the
# numbers 1..16 so that we can recognise every pixel later; the filter adds up the
# diagonal of its window, so you can check every output by eye (top left:
# 1 + 6 + 11 = 18).  Without padding, a 3×3 window fits in 2×2 positions, so the output
# is 2×2:
#
# $$ y[o, p, q] = \sum_{c, i, j} w[o, c, i, j]\; x[c, p + i, q + j] . $$
#
# `conv2d_naive` is that formula as four nested loops.

# %%
x = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)
w = np.eye(3).reshape(1, 1, 3, 3)  # 1 on the diagonal, 0 elsewhere
y_naive = conv2d_naive(x, w)
print("image x[0, 0] =\n", x[0, 0])
print("filter w[0, 0] =\n", w[0, 0])
print("output (naive loops) =\n", y_naive[0, 0])

# %% [markdown]
# ## 3.2 im2col, step by step
#
# Row `r = p * OW + q` of the matrix holds the window that output pixel `(p, q)` sees,
# read row by row.  Look at the printout: row 0 is the top-left 3×3 block
# (1 2 3 / 5 6 7 / 9 10 11), row 1 the same block shifted one pixel right, and so on.

# %%
cols = im2col(x, 3, 3)
print(f"cols has shape {cols.shape}: (N*OH*OW, KH*KW*C) = (1*2*2, 3*3*1)")
for r, row in enumerate(cols):
    print(f"  output pixel (p={r // 2}, q={r % 2}): {row}")

# %% [markdown]
# The filter becomes a matrix too, one row per output channel, with its entries in the
# same order as the columns (`weight_to_matrix`).  Then **one matrix product** computes
# every output pixel at once:
#
# $$ Y = \text{cols} \cdot W_{\text{mat}}^{\top}, \qquad
#    Y[(n, p, q), o] = \sum_k \text{cols}[(n, p, q), k]\, W_{\text{mat}}[o, k] . $$
#
# The rows of `Y` are output pixels and its columns output channels, so a reshape and a
# transpose put it back in `(N, C_out, OH, OW)`.

# %%
w_mat = weight_to_matrix(w)
print("W_mat =", w_mat)
y_mat = cols @ w_mat.T  # (4, 1)
y_im2col = y_mat.reshape(1, 2, 2, 1).transpose(0, 3, 1, 2)
print("output (im2col + matmul) =\n", y_im2col[0, 0])
print(f"im2col matmul vs naive loops: max |difference| = "
      f"{np.abs(y_im2col - y_naive).max():.1e}")

# %% [markdown]
# ## 3.3 Channels last
#
# With several input channels, which order should a row use?  minires puts the channel
# **last**: columns run over (kernel row i, kernel column j, channel c).  Here is a 3×3
# image with two channels (channel 1 is minus channel 0) and a 2×2 window: each pixel's
# two channels sit side by side.

# %%
x2 = np.stack([np.arange(1, 10.0).reshape(3, 3), -np.arange(1, 10.0).reshape(3, 3)])[None]
cols2 = im2col(x2, 2, 2)
header = "  ".join(f"(i{i}j{j}c{c})" for i in range(2) for j in range(2) for c in range(2))
print("columns:", header)
print(cols2)

# %% [markdown]
# Why?  In a channels-last copy of the image, `x[n, h, w, :]` is contiguous, so each row
# of the matrix is KH runs of KW·C consecutive numbers.  The whole matrix is then **one
# strided copy** (NumPy's `as_strided` view plus `copyto`) instead of a Python loop, and
# the long side N·OH·OW of every matrix product stays in the rows.  (PyTorch's `unfold`
# puts the channel first; the idea is the same, only the order of the columns differs.)
#
# ## 3.4 Padding and stride
#
# Padding adds zeros around the image so that a 3×3 window can be centred on every pixel
# (ResNets use padding 1: the output keeps the input's size).  Stride s moves the window
# s pixels at a time, which keeps every s-th row of the matrix.  The output size is
#
# $$ OH = \left\lfloor \frac{H + 2\,\text{padding} - KH}{\text{stride}} \right\rfloor + 1 . $$

# %%
cols_pad = im2col(x, 3, 3, padding=1)
cols_stride = im2col(x, 3, 3, stride=2, padding=1)
print(f"padding 1:           cols {cols_pad.shape}  -> output 4x4")
print(f"padding 1, stride 2: cols {cols_stride.shape}   -> output 2x2")
print("first rows with padding 1 (zeros come from the padding):")
print(cols_pad[:5])
y_pad = (cols_pad @ w_mat.T).reshape(1, 4, 4, 1).transpose(0, 3, 1, 2)
print(f"padding 1, im2col vs naive: max |difference| = "
      f"{np.abs(y_pad - conv2d_naive(x, w, padding=1)).max():.1e}")

# %% [markdown]
# **Predict before you run.** Two images of 3 channels, 5×5 pixels, a 3×3 kernel with
# stride 2 and padding 1. What is the shape of the im2col matrix? (Rows: one per output
# pixel, $N \cdot OH \cdot OW$ with $OH = (H + 2p - K) // s + 1$; columns: one per value
# of a window.) Work it out, then run.

# %%
cols_predicted = im2col(np.zeros((2, 3, 5, 5)), 3, 3, stride=2, padding=1)
print("im2col matrix shape:", cols_predicted.shape)

# %%
assert cols_predicted.shape == (2 * 3 * 3, 3 * 3 * 3)
print("✓ OH = OW = (5 + 2 - 3) // 2 + 1 = 3, so 2*3*3 = 18 rows of 3*3*3 = 27 values")

# %% [markdown]
# The price of im2col is memory: every pixel is copied once for each window that
# contains it, up to KH·KW = 9 times.
#
# ## 3.5 col2im: the adjoint
#
# `col2im` goes the other way: it takes a matrix shaped like `cols` and **adds** every
# entry back onto the pixel it was copied from (entries copied from the padding are
# dropped).  Applied to a matrix of ones, it counts the copies of each pixel:

# %%
copies = col2im(np.ones_like(cols), x.shape, 3, 3)
copies_pad = col2im(np.ones_like(cols_pad), x.shape, 3, 3, padding=1)
print("copies per pixel, no padding:\n", copies[0, 0])
print("copies per pixel, padding 1:\n", copies_pad[0, 0])

# %% [markdown]
# Summing is exactly what the gradient needs.  im2col is linear, and col2im is its
# **transpose** (adjoint): for any image $x$ and any matrix $C$,
# $\langle \text{im2col}(x), C \rangle = \langle x, \text{col2im}(C) \rangle$.
# A pixel that was copied into several rows influenced the loss through each copy, so its
# gradient is the *sum* of the gradients of its copies.

# %%
x_rand = rng.standard_normal((2, 3, 5, 5))
c_rand = rng.standard_normal(im2col(x_rand, 3, 3, padding=1).shape)
lhs = np.sum(im2col(x_rand, 3, 3, padding=1) * c_rand)
rhs = np.sum(x_rand * col2im(c_rand, x_rand.shape, 3, 3, padding=1))
print(f"<im2col(x), C> = {lhs:.12f}\n<x, col2im(C)> = {rhs:.12f}   "
      f"|difference| = {abs(lhs - rhs):.1e}")

fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), gridspec_kw={"width_ratios": [1.3, 1]})
axes[0].imshow(cols_pad, cmap="viridis")
for (r, k), value in np.ndenumerate(cols_pad):
    axes[0].text(k, r, f"{value:.0f}", ha="center", va="center", fontsize=7,
                 color="white" if value < 9 else "black")
axes[0].set_title("im2col of the 4×4 image (padding 1):\n16 rows = output pixels, "
                  "9 columns = window")
axes[0].set_xlabel("column (i*3 + j)")
axes[0].set_ylabel("row (p*4 + q)")
axes[0].set_xticks(range(9))
axes[0].set_yticks(range(16))
axes[1].imshow(copies_pad[0, 0], cmap="Blues", vmin=0, vmax=12)
for (r, k), value in np.ndenumerate(copies_pad[0, 0]):
    axes[1].text(k, r, f"{value:.0f}", ha="center", va="center", fontsize=14)
axes[1].set_xticks(range(4))
axes[1].set_yticks(range(4))
axes[1].set_title("col2im(ones): how many times\neach pixel was copied")
save(fig, "03_im2col_matrix.png")

# %% [markdown]
# ## 3.6 The backward pass is two more matrix products
#
# With `G` the output gradient as a `(N·OH·OW, C_out)` matrix (rows = output pixels,
# like the columns), the forward $Y = \text{cols}\, W_{\text{mat}}^\top$ gives
#
# $$ \frac{\partial L}{\partial W_{\text{mat}}} = G^\top \text{cols}, \qquad
#    \frac{\partial L}{\partial x} = \text{col2im}\big(G\, W_{\text{mat}}\big), \qquad
#    \frac{\partial L}{\partial b_o} = \sum_{n,p,q} G[(n,p,q), o] . $$
#
# We write these four lines ourselves and compare with the library's `conv2d_backward`,
# then check the library against central differences through autograd (`F.conv2d`).

# %%
n_img, c_in, c_out, size = 2, 3, 4, 5
x_b = rng.standard_normal((n_img, c_in, size, size))
w_b = rng.standard_normal((c_out, c_in, 3, 3))
grad_y = rng.standard_normal((n_img, c_out, size, size))  # padding 1 keeps 5x5

cols_b = im2col(x_b, 3, 3, padding=1)
G = grad_y.transpose(0, 2, 3, 1).reshape(-1, c_out)  # rows = output pixels
my_grad_w = (G.T @ cols_b).reshape(c_out, 3, 3, c_in).transpose(0, 3, 1, 2)
my_grad_x = col2im(G @ weight_to_matrix(w_b), x_b.shape, 3, 3, padding=1)

lib_grad_x, lib_grad_w, lib_grad_b = conv2d_backward(grad_y, x_b, w_b, padding=1)
print(f"grad_x: by hand vs conv2d_backward, max |difference| = "
      f"{np.abs(my_grad_x - lib_grad_x).max():.1e}")
print(f"grad_w: by hand vs conv2d_backward, max |difference| = "
      f"{np.abs(my_grad_w - lib_grad_w).max():.1e}")

xt = minires.tensor(x_b, requires_grad=True)
wt = minires.tensor(w_b, requires_grad=True)
bt = minires.tensor(rng.standard_normal(c_out), requires_grad=True)
report = minires.gradcheck(lambda a, k, b: F.conv2d(a, k, b, stride=1, padding=1), xt, wt, bt)
print(f"conv2d gradcheck passed: {report.passed}   "
      f"max relative error {report.max_relative_error:.1e}")
strided = minires.gradcheck(lambda a, k: F.conv2d(a, k, stride=2, padding=1), xt, wt)
print(f"conv2d gradcheck with stride 2 passed: {strided.passed}   "
      f"max relative error {strided.max_relative_error:.1e}")

# %% [markdown]
# (For stride 1 the library computes `col2im(G W_mat)` as a convolution of the padded
# `G` with the filter flipped in space, because "the backward of a convolution is a
# convolution" and that reuses the fast im2col copy.  Same numbers, as checked above.)
#
# ## 3.7 Naive loops vs the fast kernel
#
# Same numbers, very different speed.  The loop version runs one small NumPy operation
# per output value; the fast one does one copy and one matrix product per chunk of the
# batch.

# %%
if SIZE == "small":
    shape, c_out, repeats = (2, 3, 10, 10), 4, 3
else:
    shape, c_out, repeats = (8, 8, 16, 16), 16, 10
x_big = rng.standard_normal(shape)
w_big = rng.standard_normal((c_out, shape[1], 3, 3))
b_big = rng.standard_normal(c_out)

start = time.perf_counter()
y_slow = conv2d_naive(x_big, w_big, b_big, padding=1)
t_naive = time.perf_counter() - start
start = time.perf_counter()
for _ in range(repeats):
    y_fast = conv2d_forward(x_big, w_big, b_big, padding=1)
t_fast = (time.perf_counter() - start) / repeats
print(f"input {shape}, {c_out} filters of 3x3, padding 1")
print(f"fast (im2col) vs naive: max |difference| = {np.abs(y_fast - y_slow).max():.1e}")
diff = np.abs(conv2d_forward(x_big, w_big, b_big, stride=2, padding=1)
              - conv2d_naive(x_big, w_big, b_big, stride=2, padding=1)).max()
print(f"stride 2: fast vs naive max |difference| = {diff:.1e}")
print(f"naive loops: {t_naive * 1e3:.1f} ms   im2col + matmul: {t_fast * 1e3:.2f} ms   "
      f"speed-up x{t_naive / t_fast:.0f}")

# %% [markdown]
# ## What you saw
#
# * **im2col** copies each receptive field into one row; a convolution is then **one
#   matrix product** with the filters as a matrix.  It matched the naive loops exactly
#   (difference 0 on the integer example, ~1e-14 on random float64 inputs: rounding).
# * minires orders each row (kernel row, kernel column, **channel**): channels last, so
#   the copy is a single strided operation.
# * Every pixel is copied up to KH·KW times: `col2im(ones)` counted 1..4 copies without
#   padding and 4..9 with padding 1.
# * **col2im** is the adjoint of im2col (it *adds* the copies back), which is exactly what
#   the input gradient needs: the backward pass is $G^\top\,\text{cols}$ and
#   $\text{col2im}(G\,W_{\text{mat}})$, checked against the library and gradcheck.
# * The matrix form is many times faster than the loops (and the gap grows with the
#   image size); on a GPU the same matrix product runs on cuBLAS.
#
# **Next:** tutorial 4 derives BatchNorm's backward pass, the layer that follows every
# convolution in a ResNet.
#
# | English | 中文 |
# |---|---|
# | convolution | 卷积 |
# | receptive field | 感受野 |
# | matrix multiplication | 矩阵乘法 |
# | padding / stride | 填充 / 步幅 |

# %% [markdown]
# ## Your turn: `im2col`
#
# Write im2col in minires's layout: `x` of shape `(N, C, H, W)` becomes `cols` of shape
# `(N*OH*OW, KH*KW*C)` with `cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = x_pad[n, c,
# oh*stride + i, ow*stride + j]`: one row per output pixel, and the channel LAST inside a
# row. Keep `x`'s dtype.
#
# Replace `raise NotImplementedError` with your code and run the cell, then run the check
# below. The checker runs your function **in a separate process** on several inputs (edge
# cases and a float32 one), compares it with minires's own kernel and explains the first
# value that differs. It says "not started" until you write something. The full exercise,
# with a longer docstring and hints, is `tutorials/exercises/im2col.py` (`python -m
# minires check im2col` checks that file).

# %%
def im2col(x, kernel_h, kernel_w, stride=1, padding=0):
    """x (N, C, H, W) -> cols (N*OH*OW, KH*KW*C), channels last inside a row."""
    raise NotImplementedError  # your code here: see tutorials/exercises/im2col.py

# %%
from minires.exercises import check

result = check("im2col", im2col)
