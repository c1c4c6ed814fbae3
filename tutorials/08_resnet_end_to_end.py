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
# # 8. ResNet-20, end to end
#
# Everything comes together: we assemble the paper's CIFAR ResNet-20 from `BasicBlock`s,
# check it against the library's, read its `summary()`, train it briefly next to its
# plain twin, and look inside with forward hooks.  The last section explains what
# changes when the same code runs on a GPU.
#
# In this tutorial you will
#
# 1. build ResNet-20 yourself (the layout of the paper's section 4.2) and check it against
#    `minires.models.get_model("resnet20")`,
# 2. read its `summary()`: shapes, parameters, multiply-adds,
# 3. train ResNet-20 and plain-20 with `Trainer` and the paper's recipe,
# 4. measure the layer responses with forward hooks,
# 5. see what would change on a GPU.

# %% [markdown]
# **Open the source.** `minires/models/cifar.py`: `CifarResNet` and `resnet20` (the
# network in one class); `minires/models/summary.py`: `summary`; `minires/train.py`:
# `Trainer`. **In the paper** (He et al., *Deep Residual Learning for Image Recognition*,
# arXiv [1512.03385](https://arxiv.org/abs/1512.03385)): §4.2 (CIFAR-10 and Analysis): the
# $6n + 2$-layer design, Table 6 (ResNet-20: 0.27M parameters, 8.75% error) and Fig. 7
# (layer responses).

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
from minires import models, nn, optim
from minires.data import DataLoader, load_mnist
from minires.models import BasicBlock, summary
from minires.train import Trainer, paper_cifar_recipe

# Size switch: "normal" for class, "small" for a quick check (the tests use "small").
SIZE = os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")
if SIZE not in ("small", "normal"):
    raise ValueError(f"MINIRES_TUTORIAL_SIZE must be 'small' or 'normal', got {SIZE!r}")
OUT = Path(os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out"))
OUT.mkdir(parents=True, exist_ok=True)

WIDTHS = (8, 16, 32)  # channels of the three stages; the paper uses (16, 32, 64)
TRAIN_IMAGES = 200 if SIZE == "small" else 1000
TEST_IMAGES = 100 if SIZE == "small" else 500
EPOCHS = 1 if SIZE == "small" else 3
BATCH = 50


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
# ## 8.1 Building ResNet-20 from blocks
#
# The paper's CIFAR network (section 4.2): a 3×3 convolution with 16 filters, then three
# **stages** of $n$ blocks on feature maps of 32, 16 and 8 pixels with 16, 32 and 64
# filters, then global average pooling and a 10-way linear layer.  The first block of
# stages 2 and 3 has stride 2 (halving the map) and an option-A shortcut.  Each block has
# two 3×3 convolutions, so there are $6n + 2$ weighted layers: $n = 3$ gives ResNet-20.
# Our digits are 28×28 with one channel, so the maps are 28, 14 and 7 pixels.
#
# We use the same attribute names as the library (`conv1`, `bn1`, `layer1`, ...), so the
# two models have identical state dicts and we can compare them weight for weight.

# %%
class MyResNet20(nn.Module):
    def __init__(self, widths=(16, 32, 64), in_channels=3, num_classes=10, n=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        in_planes = widths[0]
        for stage, planes in enumerate(widths, start=1):
            blocks = []
            for index in range(n):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride=stride, shortcut="A"))
                in_planes = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x).flatten(1)  # (N, C, 1, 1) -> (N, C)
        return self.fc(x)


minires.manual_seed(0)
mine = MyResNet20(WIDTHS, in_channels=1)
library = models.get_model("resnet20", in_channels=1, widths=WIDTHS)
mine.load_state_dict(library.state_dict())  # strict: every name and shape must match
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
probe = minires.tensor(x_test[:8])
mine.eval()
library.eval()
with minires.no_grad():
    difference = np.abs(mine(probe).numpy() - library(probe).numpy()).max()
print(f"my ResNet-20 vs get_model('resnet20'): {mine.num_parameters():,} vs "
      f"{library.num_parameters():,} parameters, max |output difference| = {difference:.1e}")

# %% [markdown]
# **Predict before you run.** The paper's ResNet-20 (widths 16, 32, 64; 3 input channels,
# 10 classes; option A shortcuts, which have no weights) is listed in Table 6 with how
# many parameters: about 27 thousand, 0.27 million or 2.7 million?

# %%
paper_resnet20 = models.get_model("resnet20")
print(f"ResNet-20 as in the paper: {paper_resnet20.num_parameters():,} parameters")

# %%
assert 0.265e6 < paper_resnet20.num_parameters() < 0.275e6
print("✓ 0.27M, as in Table 6: almost all of it in the 3x3 convolutions of stage 3")

# %% [markdown]
# ## 8.2 `summary()`
#
# One zero image goes through the model with a forward hook on every leaf layer.  Read
# the output shapes: 28×28 in stage 1, 14×14 in stage 2, 7×7 in stage 3, while the
# channels double.  Halving the map and doubling the filters keeps the work per layer
# roughly constant (the paper's design rule).  The multiply-add count is the paper's
# "FLOPs".  `depth=1` prints one row per stage (the 62 rows of every layer call are still
# in `info.layers`; `depth=2` gives one row per block, `depth=None` every layer).

# %%
info = summary(library, (1, 28, 28), depth=1)  # one row per stage; depth=None: every layer
macs_per_stage = {stage: sum(row.macs for row in info.layers if row.name.startswith(stage))
                  for stage in ("layer1", "layer2", "layer3")}
print("multiply-adds per stage:",
      ", ".join(f"{stage} {macs:,}" for stage, macs in macs_per_stage.items()))

# %% [markdown]
# ## 8.3 Training ResNet-20 and plain-20
#
# `Trainer` runs the loop of tutorial 5 for us, epoch by epoch, and records a `History`
# (training loss/error measured on the batches as they are trained, test loss/error in
# eval mode at the end of each epoch).  `paper_cifar_recipe` is SGD with learning rate
# 0.1, momentum 0.9, weight decay 1e-4, the rate divided by 10 at 50% and 75% of
# training.  Plain-20 is the same network without shortcuts.

# %%
train_loader = DataLoader((x_train[:TRAIN_IMAGES], y_train[:TRAIN_IMAGES]), BATCH,
                          shuffle=True, seed=0)
test_loader = DataLoader((x_test[:TEST_IMAGES], y_test[:TEST_IMAGES]), 250)


def train(name):
    minires.manual_seed(0)
    model = models.get_model(name, in_channels=1, widths=WIDTHS)
    optimizer, scheduler = paper_cifar_recipe(model, len(train_loader), EPOCHS)
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      scheduler_interval="step", progress=False)
    print(f"--- {name}")
    start = time.perf_counter()
    history = trainer.fit(EPOCHS)
    print(f"{name}: {EPOCHS} epochs in {time.perf_counter() - start:.1f} s")
    return model, history


trained = {name: train(name) for name in ("resnet20", "plain20")}
for name, (_, history) in trained.items():
    print(f"{name}: training loss {history['train_loss'][0]:.3f} -> "
          f"{history['train_loss'][-1]:.3f}, final test error {history['test_error'][-1]:.1%}")

# %% [markdown]
# ## 8.4 Looking inside: layer responses
#
# The paper's Fig. 7 plots the standard deviation of every 3×3 layer's **response**: its
# output after BN, before the ReLU or the addition.  In a ResNet that is the residual
# function $F$'s contribution; the paper found it smaller than in plain nets, i.e. the
# residual functions stay close to zero and each block only gently modifies its input.
#
# We record it with forward hooks on every BN that follows a 3×3 convolution, on a batch
# of test digits in eval mode.  A second set of hooks on the blocks records the std of
# each block's **output**, the signal that travels along the network.

# %%
def layer_responses(model):
    responses, outputs, handles = [], [], []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d) and "downsample" not in name:
            handles.append(module.register_forward_hook(
                lambda m, inputs, out: responses.append(float(out.numpy().std()))))
        if isinstance(module, BasicBlock):
            handles.append(module.register_forward_hook(
                lambda m, inputs, out: outputs.append(
                    (float(inputs[0].numpy().std()), float(out.numpy().std())))))
    model.eval()
    with minires.no_grad():
        model(minires.tensor(x_test[:TEST_IMAGES]))
    for handle in handles:
        handle.remove()
    return np.array(responses), np.array(outputs)


stats = {name: layer_responses(model) for name, (model, _) in trained.items()}
for name, (responses, outputs) in stats.items():
    print(f"{name}: response std per 3x3 layer min {responses.min():.2f}, "
          f"max {responses.max():.2f}; block output std, first block "
          f"{outputs[0, 1]:.2f}, last block {outputs[-1, 1]:.2f}")
res_responses, res_outputs = stats["resnet20"]
relative = res_responses[2::2] / res_outputs[:, 0]  # std(F(x)) / std(x), per block
print("ResNet-20, std(F(x)) / std(x) per block: " + " ".join(f"{r:.2f}" for r in relative))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for name, (responses, outputs) in stats.items():
    axes[0].plot(np.arange(1, len(responses) + 1), responses, "o-", ms=3, label=name)
    axes[1].plot(np.arange(1, len(outputs) + 1), outputs[:, 1], "o-", ms=3, label=name)
axes[0].set_xlabel("3×3 layer (after BN)")
axes[0].xaxis.get_major_locator().set_params(integer=True)
axes[0].set_ylabel("std of the response")
axes[0].set_title("Layer responses (paper Fig. 7)")
axes[1].set_xlabel("block")
axes[1].set_ylabel("std of the block's output")
axes[1].set_title("The signal along the network")
for ax in axes:
    ax.legend()
save(fig, "08_layer_responses.png")

# %% [markdown]
# What to look for:
#
# * **Responses** (left): after a training run this short, BN's γ has hardly moved from
#   1, so every response has a std close to 1 in both networks (they differ by a few
#   percent, at most ~20%).  The paper's clear gap (smaller responses in the ResNet)
#   builds up over its 64k iterations as the residual branches' γ shrink; raise
#   `EPOCHS` and `TRAIN_IMAGES` to watch it start.
# * **Block outputs** (right): in the ResNet the signal is a running **sum**,
#   $x_{k+1} = \operatorname{relu}(x_k + F_k(x_k))$, so its std grows along the network,
#   and each residual becomes a *smaller correction* relative to it (the printed ratio
#   std(F(x))/std(x) tends to fall with depth).  In the plain net every block replaces
#   its input, and BN keeps the std roughly constant.
# * The test loss after the first epoch can be huge (see the log): at learning rate 0.1
#   the weights move fast and BN's running statistics, used in eval mode, lag behind.
#   It settles once the rate drops.
#
# ## 8.5 What changes on a GPU
#
# Nothing in the model code.  minires writes every kernel against an *array module*
# `xp`, which is NumPy for arrays in main memory and CuPy for arrays on an NVIDIA GPU; it
# picks the module from the arrays themselves.  `model.to("cuda")` moves every parameter
# and buffer; `Trainer(..., device="cuda")` moves each batch.  Then:
#
# * the matrix products of the convolutions run on cuBLAS, for the whole batch at once
#   (on the CPU the batch is cut into cache-sized chunks); the im2col copies, pooling,
#   BatchNorm and activations run hand-written CUDA twins of the CPU kernels
#   (`minires/kernels/cuda/*.cu`, one GPU thread per output element), compiled the
#   first time they are needed;
# * the GPU wants **large batches** and float32: with a batch of 50 tiny 28×28 digits it
#   is mostly waiting for Python to launch the next kernel;
# * moving data between CPU and GPU is slow, so batches are moved once and results come
#   back only when printed (`.item()`, `.numpy()`);
# * GPU work is asynchronous: a timing is only meaningful after something forces the
#   results back (here `loss.item()`).
#
# The cell below runs only where CuPy can see a GPU (`minires.is_cuda_available()`).

# %%
def time_training_step(model, images, labels, device, repeats=3):
    """Seconds for one forward + backward + SGD step (best of `repeats`)."""
    model.to(device)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = minires.tensor(images).to(device)
    target = minires.tensor(labels).to(device)
    seconds = []
    for _ in range(repeats + 1):  # the first step also compiles/allocates: not timed
        start = time.perf_counter()
        loss = F.cross_entropy(model(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # wait for the device to finish
        seconds.append(time.perf_counter() - start)
    return min(seconds[1:])


if minires.is_cuda_available():
    batch_size = 256
    cpu_step = time_training_step(models.get_model("resnet20", in_channels=1),
                                  x_train[:batch_size], y_train[:batch_size], "cpu")
    gpu_step = time_training_step(models.get_model("resnet20", in_channels=1),
                                  x_train[:batch_size], y_train[:batch_size], "cuda")
    print(f"ResNet-20 (paper widths), batch {batch_size}: one training step takes "
          f"{cpu_step:.2f} s on the CPU, {gpu_step * 1e3:.1f} ms on the GPU")
else:
    print("no CUDA GPU visible to CuPy here: the GPU cell was skipped "
          "(everything above ran on the CPU)")

# %% [markdown]
# ## What you saw
#
# * ResNet-20 is a short recipe: conv, three stages of BasicBlocks (stride 2 and an
#   option-A shortcut where a stage starts), global average pooling, linear.  Our
#   hand-built one matched the library's output exactly.
# * `summary()` lists shapes, parameters and multiply-adds; halving the map while
#   doubling the channels keeps the work per stage about equal.
# * A few epochs with `Trainer` and the paper's recipe: both nets learn; the ResNet's
#   loss falls faster here.
# * Forward hooks measured the responses of every layer; in the ResNet the blocks add
#   corrections to a growing signal, which is what "residual" means.
# * On a GPU the same code runs with CuPy arrays after `model.to("cuda")`.
#
# This is the end of the path.  The exercises in `tutorials/exercises/` ask you to
# write some of these pieces yourself; check them with `python -m minires check NAME`.
#
# | English | 中文 |
# |---|---|
# | residual network | 残差网络 |
# | layer response | 层响应 |
# | degradation | 退化 |
# | vanishing gradient | 梯度消失 |
# | identity mapping | 恒等映射 |
