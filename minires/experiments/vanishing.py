"""Vanishing gradients: measured in a one-neuron chain and in deep MLPs on real MNIST.

Why this demonstration comes first.  Before residual connections, the best-known obstacle to
depth was the *vanishing gradient* (seed article 000, section 2.1; seed 002).  Back-propagation
multiplies one factor per layer, and for a sigmoid unit each factor contains
sigma'(z) = sigma(z) (1 - sigma(z)) <= 1/4.  A product of many numbers below one goes to
zero geometrically, so the first layers of a deep sigmoid net receive almost no gradient and
do not learn.  The remedies the ResNet paper builds on are careful initialisation (Glorot &
Bengio 2010; He et al. 2015), ReLU units, Batch Normalization (Ioffe & Szegedy 2015) and,
finally, identity shortcuts.

What is measured, in three parts:

(a) The chain of the seed's figure 2, one neuron per layer::

        y = sigma(w4 sigma(w3 sigma(w2 sigma(w1 x + b1) + b2) + b3) + b4)

    with z1 = w1 x + b1, a_i = sigma(z_i), z_{i+1} = w_{i+1} a_i + b_{i+1}.  The chain rule
    gives dy/db1 = sigma'(z4) w4 sigma'(z3) w3 sigma'(z2) w2 sigma'(z1).  We compute it from
    this formula and with minires's autograd (float64) and check they agree to ~1e-12; each
    factor sigma'(z_i) is at most 0.25.

(b) MLPs of several depths at *initialisation* (no training: this is about whether a
    gradient can reach the first layer at all) on a batch of real MNIST digits, flattened
    to 784 inputs, with cross-entropy loss.  For every activation (sigmoid, tanh, ReLU),
    weight initialisation (N(0, 1), Xavier, He), and architecture (plain; BatchNorm after
    each hidden Linear; residual hidden layers h_l = h_{l-1} + f(W_l h_{l-1})) we measure
    the gradient norm ||dL/dW_l|| of every Linear layer l = 1..L.  A straight line fitted to
    log10 ||dL/dW_l|| against l gives a geometric *per-layer factor* rho: the gradient is
    multiplied by about rho each time it goes one layer further back (rho < 1: vanishing,
    rho > 1: growing toward the input).  That is the number to hold next to the 0.25 bound.
    Roughly, rho ~ (weight gain) x (typical sigma'): Xavier weights have gain ~1, so a
    sigmoid net's rho is just below 0.25; He weights (gain sqrt 2) give ~0.3; N(0, 1)
    weights (gain ~sqrt(width)) can offset the small sigma', at the price of saturation.

    Ratios and rho use the hidden-to-hidden layers 2..L-1 only: they all have the same
    width x width shape, so their norms compare like with like, whereas the input layer
    (784 inputs) and the output layer (10 outputs, reading a residual stream that grows
    with depth) differ in shape and scale.  "Within one order of magnitude" means
    max/min of ||dL/dW_l|| over those layers below 10.  The all-layer ratio
    ||dL/dW_1|| / ||dL/dW_L|| is reported beside it.  We also record the norm of the
    back-propagated signal ||dL/dh_l|| for every hidden output h_l: the seed's dy/da_1.

(c) The forward side of the same story: the distribution of a sigmoid MLP's activations,
    layer by layer, for weights with standard deviation 1 (units saturate at 0 or 1, where
    sigma' ~ 0), 0.01 (everything collapses to 0.5: no signal) and Xavier (a healthy spread),
    as in Glorot & Bengio's (2010) activation histograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minires import backend, nn
from minires import functional as F
from minires.autograd import Tensor
from minires.data import load_mnist
from minires.experiments.common import (
    DemoConfig,
    DemoResult,
    Stopwatch,
    decay_factor,
    progress,
)

NAME = "vanishing"
TITLE = "Vanishing gradients: sigma' <= 1/4, and what keeps deep gradients alive"

CLAIM = (
    "The sigmoid's derivative is at most 0.25, so the gradient that reaches an early layer "
    "is a product of one small factor per layer and vanishes geometrically with depth "
    "(a 20-layer sigmoid MLP with Xavier initialisation: first-to-last hidden-layer gradient "
    "ratio below 1e-3). ReLU with He initialisation, Batch Normalization, or residual "
    "connections keep the per-layer gradient norms of a 20-layer MLP within one order of "
    "magnitude.")
SOURCE = (
    "Seed article 000, section 2.1 and its figure 2 (single-neuron chain, sigma'(x) <= 0.25); "
    "seed article 002 (vanishing/exploding gradients, ReLU and BatchNorm as remedies); "
    "Glorot & Bengio 2010 (initialisation, saturation of sigmoid units); He et al. 2015, "
    "'Delving Deep into Rectifiers' (He initialisation); Ioffe & Szegedy 2015 (BatchNorm); "
    "He et al. 2016 (residual connections).")

ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("normal", "xavier", "he")
VARIANTS = ("plain", "bn", "residual")
INIT_LABELS = {"normal": "N(0,1)", "xavier": "Xavier", "he": "He"}
VARIANT_LABELS = {"plain": "plain", "bn": "BatchNorm", "residual": "residual"}

SIGMOID_BOUND = 0.25  # max of sigma'(x) = sigma(x)(1 - sigma(x)), reached at x = 0
SATURATION = 0.45  # a sigmoid unit counts as saturated when |a - 0.5| > 0.45 (a < .05 or > .95)
NEAR_HALF = 0.05  # ... and as collapsed onto 0.5 when |a - 0.5| < 0.05 (a in (0.45, 0.55))
VANISH_RATIO = 1e-3  # the sigmoid claim: first/last hidden-layer gradient ratio below this
ALIVE_SPREAD = 10.0  # "within one order of magnitude": max/min hidden-layer norm below this

# The configurations drawn in the gradient figure (activation, variant, init).
SHOWN = (("sigmoid", "plain", "normal"), ("sigmoid", "plain", "xavier"),
         ("sigmoid", "plain", "he"), ("sigmoid", "bn", "xavier"),
         ("sigmoid", "residual", "xavier"), ("tanh", "plain", "xavier"),
         ("relu", "plain", "he"))


@dataclass(frozen=True)
class Sizes:
    """How big each part is (chosen by ``config.pick``)."""

    width: int  # units per hidden layer
    batch: int  # MNIST images per gradient measurement
    depths: tuple  # numbers of Linear layers in the depth sweep
    main_depth: int  # the depth of the full comparison table and of the verdicts
    seeds: int  # weight draws (each with its own batch) averaged per configuration
    hist_batch: int  # images for the activation histograms
    sweep_all: bool = False  # every configuration at every depth (else SHOWN ones only)


def sizes_for(config: DemoConfig) -> Sizes:
    return config.pick(
        tiny=Sizes(width=64, batch=64, depths=(5, 20), main_depth=20, seeds=1, hist_batch=64),
        quick=Sizes(width=128, batch=256, depths=(5, 10, 20, 50), main_depth=20, seeds=3,
                    hist_batch=256),
        full=Sizes(width=256, batch=512, depths=(5, 10, 20, 50, 100), main_depth=20, seeds=5,
                   hist_batch=1000, sweep_all=True))


def key(activation: str, variant: str, init: str) -> str:
    """The name of one configuration in ``result.numbers``, e.g. ``sigmoid/plain/xavier``."""
    return f"{activation}/{variant}/{init}"


def label(activation: str, variant: str, init: str) -> str:
    """A readable name, e.g. ``sigmoid + BatchNorm, Xavier``."""
    arch = "" if variant == "plain" else f" + {VARIANT_LABELS[variant]}"
    return f"{activation}{arch}, {INIT_LABELS[init]}"


# ---------------------------------------------------------------------------- (a) the chain


def sigmoid_np(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_chain(w, b, x: float) -> dict:
    """dy/db1 for the seed's one-neuron chain, by the chain-rule formula and by autograd.

    ``w`` and ``b`` hold (w1..wn) and (b1..bn); layer i computes z_i = w_i a_{i-1} + b_i and
    a_i = sigma(z_i) with a_0 = x, and y = a_n.  Symbolically,
    dy/db1 = sigma'(z_n) w_n ... sigma'(z_2) w_2 sigma'(z_1): one factor sigma'(z_i) per
    layer and one weight per layer above the first.  Autograd computes the same number by
    back-propagating through minires Tensors in float64.
    """
    w, b = np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)
    z, a, prev = [], [], float(x)
    for wi, bi in zip(w, b, strict=True):
        z.append(wi * prev + bi)
        prev = float(sigmoid_np(z[-1]))
        a.append(prev)
    z, a = np.array(z), np.array(a)
    sigma_prime = a * (1.0 - a)
    symbolic = float(sigma_prime[0] * np.prod(sigma_prime[1:] * w[1:]))

    b_tensors = [Tensor(np.array(bi), requires_grad=True) for bi in b]
    h = Tensor(np.array(float(x)))
    for wi, bt in zip(w, b_tensors, strict=True):
        h = (h * Tensor(np.array(wi)) + bt).sigmoid()
    h.backward()
    by_autograd = float(b_tensors[0].grad.data)
    return {
        "w": w.tolist(), "b": b.tolist(), "x": float(x), "z": z.tolist(), "a": a.tolist(),
        "y": float(a[-1]), "sigma_prime": sigma_prime.tolist(),
        "weights_in_product": w[1:].tolist(), "symbolic": symbolic, "autograd": by_autograd,
        "abs_error": abs(symbolic - by_autograd),
        "rel_error": abs(symbolic - by_autograd) / abs(symbolic),
    }


# ---------------------------------------------------------------------------- (b) deep MLPs


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


def summarise(norms) -> dict:
    """Ratios of one configuration's per-layer norms ||dL/dW_l||, l = 1..L.

    * ``ratio_hidden`` = ||dL/dW_2|| / ||dL/dW_{L-1}||: first over last *hidden-to-hidden*
      layer.  These L - 2 layers are all width x width, so their norms compare like with
      like; the input layer (784 wide) and the output layer (10 wide, reading a residual
      stream that grows with depth) differ in shape and scale.
    * ``spread_hidden`` = max / min of ||dL/dW_l|| over l = 2..L-1 ("within one order of
      magnitude" means below 10).
    * ``ratio_all`` = ||dL/dW_1|| / ||dL/dW_L|| and ``spread_all``: the same over all layers.
    * ``decay_factor``: :func:`decay_factor` fitted over the hidden-to-hidden layers.
    """
    n = np.asarray(norms, dtype=np.float64)
    hidden = n[1:-1]
    safe_min = max(hidden.min(), np.finfo(np.float64).tiny)
    return {
        "ratio_hidden": float(hidden[0] / hidden[-1]),
        "spread_hidden": float(hidden.max() / safe_min),
        "ratio_all": float(n[0] / n[-1]),
        "spread_all": float(n.max() / max(n.min(), np.finfo(np.float64).tiny)),
        "decay_factor": decay_factor(hidden, np.arange(2, len(n))),
        "zero_layers": int((n == 0).sum()),
    }


def measure_gradients(config: DemoConfig, sizes: Sizes, images: np.ndarray,
                      labels: np.ndarray) -> dict:
    """Per-layer gradient norms for every (activation, variant, init) at the main depth, and
    for the :data:`SHOWN` configurations (all of them with ``sizes.sweep_all``) at the other
    depths.

    Each configuration is measured ``sizes.seeds`` times, draw s using weight seed
    ``config.seed + s`` and MNIST training images [s B, (s + 1) B); the per-layer norms are
    averaged geometrically (mean of log10), the right average for numbers spanning many
    orders of magnitude.  Returns {depth: {key: {...}}}.
    """
    everything = [(a, v, i) for a in ACTIVATIONS for v in VARIANTS for i in INITS]
    jobs = [(d, *c) for d in sizes.depths for c in everything
            if d == sizes.main_depth or sizes.sweep_all or c in SHOWN]
    results: dict = {}
    for depth, activation, variant, init in progress(jobs, "vanishing: gradients",
                                                     config.progress):
        per_seed, signal_per_seed, losses = [], [], []
        for s in range(sizes.seeds):
            backend.manual_seed(config.seed + s)
            model = MLP(depth, sizes.width, activation, init, batchnorm=variant == "bn",
                        residual=variant == "residual")
            batch = slice(s * sizes.batch, (s + 1) * sizes.batch)
            weight, signal, loss = gradient_norms(model, images[batch], labels[batch])
            per_seed.append(weight)
            signal_per_seed.append(signal)
            losses.append(loss)
        norms = _geometric_mean(per_seed)
        signal = _geometric_mean(signal_per_seed)
        entry = {"weight_grad_norms": norms.tolist(),
                 "weight_grad_norms_per_seed": [p.tolist() for p in per_seed],
                 "hidden_grad_norms": signal.tolist(),
                 "signal_decay_factor": decay_factor(signal),
                 "loss_per_seed": losses}
        entry |= summarise(norms)
        entry["ratio_hidden_per_seed"] = [summarise(p)["ratio_hidden"] for p in per_seed]
        entry["spread_hidden_per_seed"] = [summarise(p)["spread_hidden"] for p in per_seed]
        results.setdefault(depth, {})[key(activation, variant, init)] = entry
    return results


def _geometric_mean(rows) -> np.ndarray:
    rows = np.maximum(np.asarray(rows, dtype=np.float64), np.finfo(np.float64).tiny)
    return 10.0 ** np.log10(rows).mean(axis=0)


# ---------------------------------------------------------------------------- (c) activations


def activation_statistics(depth: int, width: int, weight_std, images: np.ndarray,
                          seed: int) -> dict:
    """Sigmoid activations of every hidden layer of a plain MLP at initialisation.

    ``weight_std`` is a number (all weights N(0, std^2)) or ``"xavier"``.  Forward hooks on
    the Sigmoid modules collect each layer's outputs.  Returns the outputs (for the
    histograms) and, per layer, their standard deviation, mean, the fraction of saturated
    units (|a - 0.5| > 0.45, where sigma' < 0.05) and the fraction collapsed onto 0.5
    (|a - 0.5| < 0.05: the unit barely depends on its input, so it carries no signal).
    """
    backend.manual_seed(seed)
    model = MLP(depth, width, "sigmoid", "xavier")
    if weight_std != "xavier":
        for linear in model.linears:
            nn.init.normal_(linear.weight, 0.0, float(weight_std))
    outputs = []
    handles = [act.register_forward_hook(lambda m, i, out: outputs.append(out.data.copy()))
               for act in model.acts]
    model(Tensor(images))
    for handle in handles:
        handle.remove()
    return {
        "outputs": outputs,
        "std_per_layer": [float(a.std()) for a in outputs],
        "mean_per_layer": [float(a.mean()) for a in outputs],
        "saturated_per_layer": [float((np.abs(a - 0.5) > SATURATION).mean()) for a in outputs],
        "saturated_overall": float(np.mean([(np.abs(a - 0.5) > SATURATION).mean()
                                            for a in outputs])),
        "near_half_per_layer": [float((np.abs(a - 0.5) < NEAR_HALF).mean()) for a in outputs],
    }


# ---------------------------------------------------------------------------- the demonstration


def measure(config: DemoConfig) -> dict:
    """(a), (b), (c): {"sizes", "chain", "grads" (per depth, per configuration), "stats"
    (activation statistics per weight scale)}, all float64."""
    sizes = sizes_for(config)
    with backend.default_dtype(np.float64):
        images, labels = load_mnist("train", dtype=np.float64)
        images = images.reshape(len(images), -1)

        # (a) the seed's one-neuron chain, with weights drawn from N(0, 1.5^2)
        rng = np.random.default_rng(config.seed)
        chain = sigmoid_chain(rng.normal(0, 1.5, 4), rng.normal(0, 0.5, 4), x=1.0)

        # (b) gradient norms of deep MLPs
        grads = measure_gradients(config, sizes, images, labels)

        # (c) activation histograms of a sigmoid MLP
        hist_x = images[:sizes.hist_batch]
        stats = {label_: activation_statistics(sizes.main_depth, sizes.width, std, hist_x,
                                               config.seed)
                 for label_, std in (("std 1", 1.0), ("std 0.01", 0.01),
                                     ("Xavier", "xavier"))}
    return {"sizes": sizes, "chain": chain, "grads": grads, "stats": stats}


def run(config: DemoConfig) -> DemoResult:
    """measure, then the figures and the report with its verdicts
    (:mod:`minires.experiments.vanishing_report`)."""
    from minires.experiments import vanishing_report as report  # it imports this module

    result = DemoResult(NAME, TITLE, CLAIM, SOURCE, setup="")
    with Stopwatch() as watch:
        m = measure(config)
        sizes, chain, grads, stats = m["sizes"], m["chain"], m["grads"], m["stats"]
        result.figures = [
            report.plot_factors(config, chain, grads[sizes.main_depth], sizes.main_depth),
            report.plot_gradients(config, sizes, grads),
            report.plot_activations(config, stats)]
    report.report(result, config, sizes, chain, grads, stats)
    result.wall_time_s = watch.seconds
    return result
