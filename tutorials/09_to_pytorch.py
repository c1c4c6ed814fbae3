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
# # 9. Taking your ResNet to PyTorch and ONNX (and back)
#
# You understand a ResNet in minires; at work you will meet it in PyTorch, and in
# production as an ONNX file.  Nothing about the network changes on the way: minires uses
# torchvision's names (`conv1`, `bn1`, `layer1.0.conv1.weight`, `downsample.0`, `fc`) and
# PyTorch's shapes and BatchNorm conventions, so a state dict maps one-to-one.
#
# In this tutorial you will
#
# 1. train a small ResNet-20 for a few steps in minires,
# 2. convert it with `minires.interop.to_torch` and check that PyTorch computes the same
#    logits and gradients,
# 3. take one training step in PyTorch and bring the weights back with `from_torch`,
# 4. save a `.safetensors` file that `safetensors.torch.load_file` reads as it is,
# 5. export the eval-mode network to ONNX and run it with ONNX's reference evaluator.
#
# PyTorch and onnx are optional: `pip install -e ".[torch,onnx]"`.  A cell whose package
# is missing says so and is skipped.
#
# **Open the source.** `minires/interop/pytorch.py`: `to_torch` (a `torch.nn` twin for
# every minires module, the same formula in each `forward`) and `from_torch`;
# `minires/interop/onnx_export.py`: `export_onnx`, one small translation per module.
# **In the paper** (He et al., *Deep Residual Learning for Image Recognition*, arXiv
# [1512.03385](https://arxiv.org/abs/1512.03385)): §3.3, the option-A shortcut ("extra
# zero entries padded for increasing dimensions", here a slice and a zero pad in both
# PyTorch and ONNX) and §3.4, "batch normalization right after each convolution and
# before activation", the pattern that lets the ONNX export fold each BN into its
# convolution.

# %%
import copy
import importlib.util
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
from minires import interop, models, optim
from minires.data import load_mnist

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ONNX = importlib.util.find_spec("onnx") is not None
STEPS = 5 if SIZE == "small" else 50
WIDTHS = (8, 16, 32)


def save(fig, name):
    """Write the figure to OUT/name; show it too when running inside Jupyter."""
    path = OUT / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure written: {path}")
    if "ipykernel" in sys.modules:
        plt.show()
    else:
        plt.close(fig)


def relative_difference(a, b) -> float:
    """max |a - b| / max |b|: how far apart two arrays are, relative to their size."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# %% [markdown]
# ## 9.1 A ResNet-20 trained a little in minires
#
# A few SGD steps on the embedded MNIST digits, so that the weights and BatchNorm's
# running statistics are no longer their initial values (a conversion that only works
# for fresh weights would pass a check on an untrained net by luck).

# %%
minires.manual_seed(0)
model = models.get_model("resnet20", in_channels=1, widths=WIDTHS)
x_train, y_train = load_mnist("train")
optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
rng = np.random.default_rng(0)
for _ in range(STEPS):
    batch = rng.choice(len(x_train), 64, replace=False)
    loss = F.cross_entropy(model(minires.tensor(x_train[batch])), y_train[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"minires ResNet-20: {model.num_parameters():,} parameters, loss after {STEPS} "
      f"steps {loss.item():.3f}")
probe = x_train[:16]

# %% [markdown]
# ## 9.2 The same network in PyTorch
#
# `to_torch` walks the minires model and builds a `torch.nn` twin of every module with the
# same settings (`Conv2d(…, bias=False)`, `BatchNorm2d(eps=1e-5, momentum=0.1)`, the
# option-A shortcut as a slice and a zero pad), then copies the state dict with
# `strict=True`.  Compare the keys, the eval-mode logits, and, in train mode, the
# gradient of a loss with respect to every parameter.

# %% [markdown]
# **Predict before you run.** The minires ResNet-20's state dict holds 116 tensors
# (weights, biases, running means and variances, batch counters).  How many of their
# names must be changed before PyTorch's `load_state_dict(strict=True)` accepts them?

# %%
if HAVE_TORCH:
    import torch

    twin = interop.to_torch(model)
    same_keys = list(twin.state_dict()) == list(model.state_dict())
    print(f"to_torch gave a {type(twin).__name__}; state-dict keys equal: {same_keys} "
          f"({len(model.state_dict())} tensors, e.g. layer2.0.bn1.running_var)")
    model.eval()
    twin.eval()
    with minires.no_grad():
        ours = model(minires.tensor(probe)).numpy()
    theirs = twin(torch.from_numpy(probe)).detach().numpy()
    print(f"eval-mode logits: max relative difference = {relative_difference(ours, theirs):.1e}")


    def gradient_difference(net, torch_net, x, y):
        """max |minires grad - torch grad| / largest gradient, over every parameter."""
        net.train()
        torch_net.train()
        net.zero_grad()
        F.cross_entropy(net(minires.tensor(x)), y).backward()
        torch.nn.functional.cross_entropy(torch_net(torch.from_numpy(x)),
                                          torch.from_numpy(y)).backward()
        torch_grads = dict(torch_net.named_parameters())
        largest = max(np.abs(p.grad.numpy()).max() for p in net.parameters())
        return max(np.abs(p.grad.numpy() - torch_grads[name].grad.numpy()).max()
                   for name, p in net.named_parameters()) / largest

    worst = gradient_difference(model, twin, probe, y_train[:16])
    print(f"train-mode gradients (float32): max difference / largest gradient = {worst:.1e}")
    model64 = copy.deepcopy(model).to(dtype=np.float64)
    twin64 = interop.to_torch(model64)
    worst64 = gradient_difference(model64, twin64, probe.astype(np.float64), y_train[:16])
    print(f"train-mode gradients (float64): max difference / largest gradient = {worst64:.1e}")
else:
    print("torch is not installed: the PyTorch cells were skipped (pip install -e '.[torch]')")

# %%
if HAVE_TORCH:
    renamed = set(model.state_dict()) ^ set(twin.state_dict())
    assert same_keys and not renamed, renamed
    print("✓ none: minires's names are torchvision's, key for key, in the same order")

# %% [markdown]
# Every logit of the 16 probe digits, minires against PyTorch: the points lie on the
# diagonal.

# %%
if HAVE_TORCH:
    model.eval()
    twin.eval()
    with minires.no_grad():
        ours = model(minires.tensor(probe)).numpy()
    theirs = twin(torch.from_numpy(probe)).detach().numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(ours.ravel(), theirs.ravel(), s=8)
    low, high = ours.min(), ours.max()
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
    ax.set_xlabel("minires logit")
    ax.set_ylabel("PyTorch logit (to_torch twin)")
    ax.set_title("ResNet-20, eval mode")
    save(fig, "09_minires_vs_torch_logits.png")

# %% [markdown]
# The differences are rounding: the two frameworks sum the products of a convolution in
# different orders.  The logits differ by about 1e-7 (float32's precision); the gradients
# more, mostly that of `conv1.weight`: it sums 16 × 28 × 28 products per entry, of both
# signs, behind train-mode BatchNorms, and in float32 minires and PyTorch are *each*
# about that far from the same computation in float64.  In float64 the two agree to
# about 1e-13 (the test suite checks every model family in float64 to 1e-10).
#
# ## 9.3 A step in PyTorch, then back to minires
#
# Train the twin with `torch.optim.SGD` for one step, then copy its weights into a fresh
# minires model with `from_torch`.  It is strict: a missing, unexpected or wrongly shaped
# key is an error that lists them all, so a half-loaded model cannot happen silently.

# %%
if HAVE_TORCH:
    torch_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    torch_optimizer.step()  # uses the gradients computed above
    back = interop.from_torch(twin, models.get_model("resnet20", in_channels=1,
                                                     widths=WIDTHS))
    back.eval()
    twin.eval()
    with minires.no_grad():
        ours = back(minires.tensor(probe)).numpy()
    theirs = twin(torch.from_numpy(probe)).detach().numpy()
    print(f"after a torch SGD step and from_torch: max relative logit difference = "
          f"{relative_difference(ours, theirs):.1e}")
    try:
        interop.from_torch(twin, models.get_model("resnet32", in_channels=1, widths=WIDTHS))
    except ValueError as err:
        print("loading ResNet-20 weights into a ResNet-32:", str(err).splitlines()[0])

# %% [markdown]
# ## 9.4 One file both frameworks read
#
# A state dict saved as `.safetensors` holds only arrays and their names: loading it runs
# no code (unlike a pickle).  PyTorch reads minires's file directly, with torchvision's
# keys, and `python -m minires export` converts such a file to a torch `.pt` or `.onnx`.

# %%
path = minires.save(model.state_dict(), OUT / "resnet20.safetensors")
print(f"saved {path.name}: {path.stat().st_size:,} bytes")
if HAVE_TORCH:
    from safetensors.torch import load_file

    fresh = interop.to_torch(models.get_model("resnet20", in_channels=1, widths=WIDTHS))
    fresh.load_state_dict(load_file(str(path)), strict=True)
    fresh.eval()
    model.eval()
    with minires.no_grad():
        ours = model(minires.tensor(probe)).numpy()
    theirs = fresh(torch.from_numpy(probe)).detach().numpy()
    print(f"safetensors.torch.load_file -> load_state_dict(strict=True): max relative "
          f"logit difference = {relative_difference(ours, theirs):.1e}")

# %% [markdown]
# ## 9.5 ONNX: the network as a graph file
#
# `export_onnx` writes the eval-mode network with the `onnx` package's own helpers (no
# torch needed): each convolution with its BatchNorm folded in, with
# $s = \gamma/\sqrt{\sigma^2 + \epsilon}$: $W' = s\,W$ and $b' = \beta - s\,\mu$;
# `Relu`, `Add`, option A as `Slice` + `Pad`, `GlobalAveragePool`, `Gemm`.  ONNX's
# reference evaluator runs it in plain NumPy.
#
# **Predict before you run.** ResNet-20 has 19 BatchNorm layers, each right after a
# convolution (§3.4).  How many `BatchNormalization` nodes will the exported graph hold?

# %%
if HAVE_ONNX:
    import onnx
    from onnx.reference import ReferenceEvaluator

    onnx_path = interop.export_onnx(model, probe, OUT / "resnet20.onnx")
    graph = onnx.load(str(onnx_path)).graph
    ops = sorted({node.op_type for node in graph.node})
    print(f"wrote {onnx_path.name}: {len(graph.node)} nodes, ops {', '.join(ops)}")
    onnx_logits = ReferenceEvaluator(str(onnx_path)).run(None, {"input": probe})[0]
    model.eval()
    with minires.no_grad():
        ours = model(minires.tensor(probe)).numpy()
    print(f"ONNX reference evaluator vs minires: max relative difference = "
          f"{relative_difference(onnx_logits, ours):.1e}")
else:
    print("onnx is not installed: the ONNX cell was skipped (pip install -e '.[onnx]')")

# %%
if HAVE_ONNX:
    assert "BatchNormalization" not in ops
    assert sum(node.op_type == "Conv" for node in graph.node) == 19
    print("✓ none: each BN became part of its convolution's weights and bias (19 Conv nodes)")

# %% [markdown]
# ## What you saw
#
# * A minires ResNet and its PyTorch twin are the same function: same keys, same logits
#   and gradients up to float32 rounding.  The keys are torchvision's, so no renaming is
#   ever needed.
# * `to_torch` and `from_torch` move weights both ways, strictly by key and shape.
# * A `.safetensors` state dict is the exchange format: no code runs when it is loaded,
#   and PyTorch reads it as it is.
# * `export_onnx` writes the eval-mode graph (BatchNorm folded into the convolutions)
#   for ONNX runtimes.
# * When one machine is not enough, train the twin with PyTorch's
#   DistributedDataParallel: `python examples/ddp_train.py --nproc 2 --steps 3`.
#
# | English | 中文 |
# |---|---|
# | state dict | 状态字典 |
# | interoperability | 互操作性 |
# | export | 导出 |
# | distributed data parallel | 分布式数据并行 |
