"""A deep MLP for MNIST with a choice of activation, weight initialisation, BatchNorm and
residual hidden layers, and the per-layer gradient norms of one forward/backward pass: what
the vanishing-gradient demonstration (:mod:`minires.experiments.vanishing`) measures."""

from __future__ import annotations

import numpy as np

from minires import functional as F
from minires import nn
from minires.autograd import Tensor

INITS = ("normal", "xavier", "he")


class MLP(nn.Module):
    """A deep MLP for MNIST: ``depth`` Linear layers, ``depth - 1`` hidden ones.

    Hidden layer l computes u_l = W_l h_{l-1} (+ BatchNorm when ``batchnorm``), then
    f(u_l) with f the activation.  With ``residual``, hidden layers 2..depth-1 (the
    width-to-width ones) add their input: h_l = h_{l-1} + f(u_l); the first hidden layer
    (784 -> width) cannot, the shapes differ.  The last Linear gives the 10 logits.

    Weights are drawn by ``init``: ``normal`` N(0, 1); ``xavier`` N(0, 2 / (fan_in +
    fan_out)) (Glorot & Bengio 2010); ``he`` N(0, 2 / fan_in) (He et al. 2015).  Biases
    start at 0, BatchNorm at gamma = 1, beta = 0 and uses batch statistics (train mode).
    """

    def __init__(self, depth: int, width: int, activation: str = "sigmoid",
                 init: str = "xavier", batchnorm: bool = False, residual: bool = False,
                 in_features: int = 784, classes: int = 10):
        super().__init__()
        if depth < 2:
            raise ValueError(f"an MLP needs at least 2 Linear layers, got depth {depth}")
        dims = [in_features] + [width] * (depth - 1) + [classes]
        pairs = zip(dims[:-1], dims[1:], strict=False)
        self.linears = nn.Sequential(*[nn.Linear(i, o) for i, o in pairs])
        self.norms = (nn.Sequential(*[nn.BatchNorm1d(width) for _ in range(depth - 1)])
                      if batchnorm else None)
        act = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        self.acts = nn.Sequential(*[act() for _ in range(depth - 1)])
        self.residual = residual
        self.hidden = []  # the hidden outputs h_1..h_{depth-1} of the last forward pass
        for linear in self.linears:
            initialise_(linear.weight, init)
            nn.init.zeros_(linear.bias)

    def forward(self, x):
        self.hidden = []
        h = x
        for index, act in enumerate(self.acts):
            u = self.linears[index](h)
            if self.norms is not None:
                u = self.norms[index](u)
            h = h + act(u) if (self.residual and index > 0) else act(u)
            if h.requires_grad:
                h.retain_grad()  # so dL/dh_l can be read after backward
            self.hidden.append(h)
        return self.linears[len(self.acts)](h)


def initialise_(weight, init: str):
    """Fill a Linear weight in place with the named scheme (see :class:`MLP`)."""
    if init == "normal":
        return nn.init.normal_(weight, 0.0, 1.0)
    if init == "xavier":
        return nn.init.xavier_normal_(weight)
    if init == "he":
        return nn.init.kaiming_normal_(weight, nonlinearity="relu")
    raise ValueError(f"unknown init {init!r}: expected one of {INITS}")


def gradient_norms(model: MLP, x: np.ndarray, y: np.ndarray) -> tuple:
    """One forward/backward pass; returns (||dL/dW_l|| for l = 1..L, ||dL/dh_l|| for the
    hidden outputs l = 1..L-1, the loss).  Norms are Frobenius norms over the whole batch."""
    model.zero_grad()
    loss = F.cross_entropy(model(Tensor(x)), y)
    loss.backward()
    weight = np.array([float(np.linalg.norm(lin.weight.grad.data)) for lin in model.linears])
    signal = np.array([float(np.linalg.norm(h.grad.data)) for h in model.hidden])
    model.hidden = []
    return weight, signal, float(loss.item())
