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

from dataclasses import asdict, dataclass

import numpy as np

from minires import backend, nn
from minires import functional as F
from minires.autograd import Tensor
from minires.data import load_mnist
from minires.experiments.common import (
    DemoConfig,
    DemoResult,
    Stopwatch,
    fmt,
    progress,
    pyplot,
    save_figure,
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


def decay_factor(norms, layers=None) -> float:
    """The geometric per-layer factor rho of a sequence of gradient norms.

    Fits log10 ||g_l|| = c + s l by least squares over the given layer indices (default
    1..n) and returns rho = 10^(-s): going one layer back toward the input multiplies the
    gradient by about rho.  For an exact geometric sequence g_l = g_n rho^(n - l) it returns
    rho.  Zero norms (an underflow) are left out of the fit.
    """
    norms = np.asarray(norms, dtype=np.float64)
    layers = np.arange(1, len(norms) + 1) if layers is None else np.asarray(layers)
    keep = norms > 0
    if keep.sum() < 2:
        return float("nan")
    slope = np.polyfit(layers[keep], np.log10(norms[keep]), 1)[0]
    return float(10.0 ** (-slope))


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


# ---------------------------------------------------------------------------- figures


def _plot_factors(config: DemoConfig, chain: dict, grads: dict, depth: int) -> str:
    """sigma'(x) with the chain's z_i marked; fitted per-layer factors vs the 0.25 bound."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5),
                                   gridspec_kw={"width_ratios": [1, 1.6]})
    xs = np.linspace(-8, 8, 401)
    ax1.plot(xs, sigmoid_np(xs) * (1 - sigmoid_np(xs)), color="C0", label="σ'(x)")
    ax1.axhline(SIGMOID_BOUND, color="grey", ls=":", lw=1, label="0.25 bound")
    ax1.scatter(chain["z"], chain["sigma_prime"], color="C3", zorder=3,
                label="chain's $z_1..z_4$")
    lines = [f"σ'(z{i}) = {s:.3f}" for i, s in enumerate(chain["sigma_prime"], start=1)]
    lines.append(f"dy/db1 = {chain['symbolic']:.2e}")
    ax1.text(0.03, 0.95, "\n".join(lines), transform=ax1.transAxes, fontsize=7.5, va="top",
             bbox={"boxstyle": "round", "fc": "white", "ec": "0.8"})
    ax1.set(xlabel="x", ylabel="σ'(x)", title="sigmoid derivative ≤ 0.25", ylim=(0, 0.3))
    ax1.legend(fontsize=7, loc="center right")

    groups = [(a, v) for a in ACTIVATIONS for v in VARIANTS]
    width = 0.27
    for j, init in enumerate(INITS):
        values = [grads[key(a, v, init)]["decay_factor"] for a, v in groups]
        ax2.bar(np.arange(len(groups)) + (j - 1) * width, values, width,
                label=INIT_LABELS[init], color=f"C{j}")
    ax2.axhline(SIGMOID_BOUND, color="C3", ls=":", lw=1.2, label="0.25")
    ax2.axhline(1.0, color="black", lw=0.8, label="1 (no decay)")
    ax2.set_yscale("log")
    ax2.set_ylim(0.15, 8)  # room above the bars for the legend
    ax2.set_yticks([0.25, 0.5, 1, 2, 4], labels=["0.25", "0.5", "1", "2", "4"])
    ax2.minorticks_off()
    ax2.set_xticks(np.arange(len(groups)))
    ax2.set_xticklabels([f"{a}\n{VARIANT_LABELS[v]}" for a, v in groups], fontsize=7)
    ax2.set(ylabel="per-layer factor ρ",
            title=f"{depth}-layer MLPs: fitted per-layer gradient factor ρ "
                  "(ρ < 1: vanishes toward the input)")
    ax2.title.set_fontsize(9)
    ax2.legend(fontsize=7, ncol=5, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, config, f"{NAME}_factors.png")


def _plot_gradients(config: DemoConfig, sizes: Sizes, results: dict) -> str:
    """log10 ||dL/dW_l|| vs layer: the main depth for the chosen configs, and a depth sweep."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    main = results[sizes.main_depth]
    layers = np.arange(1, sizes.main_depth + 1)
    for n, (a, v, i) in enumerate(SHOWN):
        norms = np.asarray(main[key(a, v, i)]["weight_grad_norms"])
        ax1.plot(layers, np.log10(norms), marker=".", ms=3, lw=1.2, color=f"C{n}",
                 label=label(a, v, i))
    anchor = np.log10(main[key("sigmoid", "plain", "xavier")]["weight_grad_norms"][-2])
    guide = anchor + (layers - (sizes.main_depth - 1)) * np.log10(1 / SIGMOID_BOUND)
    ax1.plot(layers[1:-1], guide[1:-1], color="grey", ls=":", lw=1, label="×0.25 per layer")
    ax1.set(xlabel="layer l (1 = input side)", ylabel="log10 ||dL/dW_l||",
            title=f"{sizes.main_depth}-layer MLPs at initialisation")
    ax1.title.set_fontsize(10)
    low, high = ax1.get_ylim()
    ax1.set_ylim(low - 0.5 * (high - low), high)  # free the lower right for the legend
    ax1.legend(fontsize=6.5, loc="lower right")

    for n, depth in enumerate(sizes.depths):
        for (a, v, i), style in ((("sigmoid", "plain", "xavier"), "-"),
                                 (("relu", "plain", "he"), "--")):
            norms = np.asarray(results[depth][key(a, v, i)]["weight_grad_norms"])
            ax2.plot(np.arange(1, depth + 1), np.log10(norms), ls=style, lw=1.2,
                     color=f"C{n}", label=f"L={depth}" if style == "-" else None)
    ax2.plot([], [], color="black", ls="-", label="sigmoid, Xavier")
    ax2.plot([], [], color="black", ls="--", label="ReLU, He")
    ax2.set(xlabel="layer l", ylabel="log10 ||dL/dW_l||",
            title="depth sweep: sigmoid decays, ReLU + He stays flat")
    ax2.title.set_fontsize(10)
    ax2.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    return save_figure(fig, config, f"{NAME}_gradients.png")


def _plot_activations(config: DemoConfig, stats: dict) -> str:
    """Per-layer histograms of sigmoid activations for the three weight scales."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5), sharey=True)
    bins = np.linspace(0, 1, 41)
    for ax, (name, entry) in zip(axes, stats.items(), strict=True):
        outputs = entry["outputs"]
        n_layers = len(outputs)
        chosen = sorted({0, 1, n_layers // 4, n_layers // 2, n_layers - 1})
        colours = pyplot().cm.viridis(np.linspace(0, 0.9, len(chosen)))
        for colour, index in zip(colours, chosen, strict=True):
            counts, _ = np.histogram(outputs[index].ravel(), bins=bins)
            fraction = np.maximum(counts / counts.sum(), 1e-5)
            ax.stairs(fraction, bins, color=colour, lw=1.3, label=f"layer {index + 1}")
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 1.5)
        ax.set(xlabel="activation a", title=f"weights {name}: "
               f"{100 * entry['saturated_overall']:.0f}% saturated, "
               f"last std {entry['std_per_layer'][-1]:.3f}")
        ax.title.set_fontsize(9)
    axes[0].set_ylabel("fraction of units")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, config, f"{NAME}_activations.png")


# ---------------------------------------------------------------------------- the demonstration


def run(config: DemoConfig) -> DemoResult:
    """Measure (a), (b), (c), draw three figures, and return the result with its verdicts."""
    sizes = sizes_for(config)
    result = DemoResult(NAME, TITLE, CLAIM, SOURCE, setup="")
    with Stopwatch() as watch, backend.default_dtype(np.float64):
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

        figures = [_plot_factors(config, chain, grads[sizes.main_depth], sizes.main_depth),
                   _plot_gradients(config, sizes, grads),
                   _plot_activations(config, stats)]
    result.figures = figures
    _report(result, config, sizes, chain, grads, stats)
    result.wall_time_s = watch.seconds
    return result


def _report(result: DemoResult, config: DemoConfig, sizes: Sizes, chain: dict, grads: dict,
            stats: dict) -> None:
    """Tables, numbers and verdicts, all computed from the measurements."""
    main = grads[sizes.main_depth]
    L = sizes.main_depth
    result.setup = (
        f"(a) The seed's 4-neuron sigmoid chain with w ~ N(0, 1.5^2), b ~ N(0, 0.5^2) "
        f"(numpy seed {config.seed}) and x = 1, in float64. "
        f"(b) MLPs of {', '.join(map(str, sizes.depths))} Linear layers (784 -> "
        f"{sizes.width} -> ... -> {sizes.width} -> 10), at initialisation, on {sizes.batch} "
        f"flattened, standardised MNIST training digits per measurement, cross-entropy loss, "
        f"float64. Activations sigmoid / tanh / ReLU; weights N(0,1), Xavier "
        f"N(0, 2/(fan_in+fan_out)) or He N(0, 2/fan_in), biases 0; architectures plain, "
        f"BatchNorm (Linear -> BN -> activation, batch statistics) and residual "
        f"(h_l = h_(l-1) + f(W_l h_(l-1)) for hidden layers 2..L-1). Each configuration is "
        f"averaged (geometric mean per layer) over {sizes.seeds} weight seed(s), each on its "
        f"own batch. Ratios and the per-layer factor rho (10^-slope of a least-squares line "
        f"through log10 ||dL/dW_l||) use the hidden-to-hidden layers 2..L-1, which all have "
        f"the same {sizes.width}x{sizes.width} shape; the all-layer ratio (layer 1 over layer "
        f"L) is reported too. The gradient figure plots log10 ||dL/dW_l|| against layer l for "
        f"seven {L}-layer configurations and, right, a depth sweep of sigmoid/Xavier (solid) "
        f"vs ReLU/He (dashed). (c) Sigmoid activations of every hidden layer of a plain "
        f"{L}-layer MLP on {sizes.hist_batch} digits, weights N(0,1), N(0,0.01^2) or "
        f"Xavier; saturated means |a - 0.5| > {SATURATION}, collapsed |a - 0.5| < {NEAR_HALF}.")

    # (a) the chain
    result.table("One-neuron chain (seed 000, figure 2): the factors of dy/db1",
                 ["layer i", "z_i", "sigma'(z_i)", "w_i (enters the product for i >= 2)"],
                 [[i + 1, chain["z"][i], chain["sigma_prime"][i], chain["w"][i]]
                  for i in range(4)])
    grid = np.linspace(-20, 20, 400001)
    max_sigma_prime = float((sigmoid_np(grid) * (1 - sigmoid_np(grid))).max())
    chain["max_sigma_prime_on_grid"] = max_sigma_prime
    result.numbers["chain"] = chain
    result.check(
        "Chain rule: symbolic dy/db1 = sigma'(z4)w4 sigma'(z3)w3 sigma'(z2)w2 sigma'(z1) "
        "equals autograd (float64, relative error < 1e-10)",
        chain["rel_error"] < 1e-10,
        f"symbolic {chain['symbolic']:.15e}, autograd {chain['autograd']:.15e}, relative "
        f"error {chain['rel_error']:.1e}")
    result.check(
        "Every sigmoid factor is at most 0.25 (sigma' = sigma(1 - sigma), max at 0)",
        max(chain["sigma_prime"]) <= SIGMOID_BOUND and max_sigma_prime <= SIGMOID_BOUND,
        f"chain factors {', '.join(fmt(s) for s in chain['sigma_prime'])}; max of sigma' "
        f"on [-20, 20] = {max_sigma_prime:.6f}")

    # (b) the full comparison at the main depth
    rows = []
    for a in ACTIVATIONS:
        for v in VARIANTS:
            for i in INITS:
                e = main[key(a, v, i)]
                rows.append([a, VARIANT_LABELS[v], INIT_LABELS[i],
                             e["weight_grad_norms"][1], e["weight_grad_norms"][-2],
                             e["ratio_hidden"], e["spread_hidden"], e["decay_factor"],
                             e["ratio_all"]])
    result.table(f"{L}-layer MLPs at initialisation: gradient norms ||dL/dW_l|| "
                 f"(geometric mean over {sizes.seeds} seed(s)); rho = fitted per-layer factor",
                 ["activation", "architecture", "init", "||dL/dW_2||",
                  f"||dL/dW_{L - 1}||", f"ratio W_2/W_{L - 1}", "max/min (hidden)", "rho",
                  f"ratio W_1/W_{L}"], rows)
    sweep_rows = []
    for a, v, i in SHOWN:
        sweep_rows.append([label(a, v, i)] + [grads[d][key(a, v, i)]["ratio_hidden"]
                                              for d in sizes.depths]
                          + [grads[d][key(a, v, i)]["decay_factor"] for d in sizes.depths])
    result.table("Depth sweep: first/last hidden-layer gradient ratio, then rho, per depth L",
                 ["configuration"] + [f"ratio L={d}" for d in sizes.depths]
                 + [f"rho L={d}" for d in sizes.depths], sweep_rows)
    result.numbers["gradients"] = {str(d): v for d, v in grads.items()}

    sig = main[key("sigmoid", "plain", "xavier")]
    result.check(
        f"A {L}-layer sigmoid MLP (Xavier) has first/last hidden-layer gradient ratio "
        f"below {VANISH_RATIO:g}",
        sig["ratio_hidden"] < VANISH_RATIO,
        f"||dL/dW_2|| / ||dL/dW_{L - 1}|| = {sig['ratio_hidden']:.2e} (N(0,1): "
        f"{main[key('sigmoid', 'plain', 'normal')]['ratio_hidden']:.2e}, He: "
        f"{main[key('sigmoid', 'plain', 'he')]['ratio_hidden']:.2e}); layer 1 over layer "
        f"{L}: {sig['ratio_all']:.2e}")
    result.check(
        "Sigmoid + Xavier: the fitted per-layer factor rho is at most the 0.25 bound "
        "(Xavier keeps the weights' gain near 1, leaving sigma' as the factor)",
        sig["decay_factor"] <= SIGMOID_BOUND,
        f"rho = {sig['decay_factor']:.3f} (He, gain sqrt 2: "
        f"{main[key('sigmoid', 'plain', 'he')]['decay_factor']:.3f}; N(0,1): "
        f"{main[key('sigmoid', 'plain', 'normal')]['decay_factor']:.3f})")
    sig_ratios = [grads[d][key("sigmoid", "plain", "xavier")]["ratio_hidden"]
                  for d in sizes.depths]
    result.check(
        "Sigmoid + Xavier: the ratio shrinks with every increase in depth",
        all(b < a for a, b in zip(sig_ratios, sig_ratios[1:], strict=False)),
        ", ".join(f"L={d}: {r:.1e}" for d, r in zip(sizes.depths, sig_ratios, strict=True)))
    for (a, v, i), why in ((("relu", "plain", "he"), "ReLU + He"),
                           (("sigmoid", "bn", "xavier"), "sigmoid + BatchNorm (Xavier)"),
                           (("sigmoid", "residual", "xavier"), "residual sigmoid (Xavier)")):
        e = main[key(a, v, i)]
        result.check(
            f"{why}: {L}-layer gradient norms stay within one order of magnitude "
            f"(max/min over hidden layers 2..{L - 1} < {ALIVE_SPREAD:g})",
            e["spread_hidden"] < ALIVE_SPREAD,
            f"max/min = {e['spread_hidden']:.2f}, ratio W_2/W_{L - 1} = "
            f"{e['ratio_hidden']:.2f}, rho = {e['decay_factor']:.3f}; all layers: max/min "
            f"{e['spread_all']:.1f}")

    # (c) activations
    act_rows = []
    for name, e in stats.items():
        n_layers = len(e["std_per_layer"])
        act_rows.append([name, e["std_per_layer"][0], e["std_per_layer"][n_layers // 2],
                         e["std_per_layer"][-1], e["saturated_per_layer"][0],
                         e["saturated_per_layer"][-1], e["saturated_overall"],
                         e["near_half_per_layer"][-1]])
    result.table(f"Sigmoid activations of a plain {L}-layer MLP (hidden layers 1..{L - 1}); "
                 f"saturated: |a - 0.5| > {SATURATION}, near 0.5: |a - 0.5| < {NEAR_HALF}",
                 ["weights", "std layer 1", f"std layer {L // 2}", f"std layer {L - 1}",
                  "saturated layer 1", f"saturated layer {L - 1}", "saturated (all layers)",
                  f"near 0.5 layer {L - 1}"], act_rows)
    result.numbers["activations"] = {name: {k: v for k, v in e.items() if k != "outputs"}
                                     for name, e in stats.items()}
    big, small, xavier = stats["std 1"], stats["std 0.01"], stats["Xavier"]
    result.check(
        "Weights N(0,1) saturate sigmoid units (more than half at |a - 0.5| > 0.45)",
        big["saturated_overall"] > 0.5,
        f"{100 * big['saturated_overall']:.1f}% saturated over all layers")
    result.check(
        f"Weights N(0,0.01^2) collapse activations onto 0.5 (over 90% of the last hidden "
        f"layer's units within {NEAR_HALF} of 0.5, none saturated)",
        small["near_half_per_layer"][-1] > 0.9 and small["saturated_overall"] == 0,
        f"{100 * small['near_half_per_layer'][-1]:.1f}% within {NEAR_HALF} of 0.5 (Xavier: "
        f"{100 * xavier['near_half_per_layer'][-1]:.1f}%), last-layer std "
        f"{small['std_per_layer'][-1]:.3f}, {100 * small['saturated_overall']:.1f}% "
        f"saturated")
    result.check(
        "Xavier gives a healthy spread (every hidden layer's std above 0.05, under 5% "
        "saturated)",
        min(xavier["std_per_layer"]) > 0.05 and xavier["saturated_overall"] < 0.05,
        f"std {min(xavier['std_per_layer']):.3f}..{max(xavier['std_per_layer']):.3f}, "
        f"{100 * xavier['saturated_overall']:.1f}% saturated")

    result.numbers["sizes"] = asdict(sizes)
    result.numbers["thresholds"] = {"sigmoid_bound": SIGMOID_BOUND, "saturation": SATURATION,
                                    "vanish_ratio": VANISH_RATIO, "alive_spread": ALIVE_SPREAD}
    result.notes = _notes(main, L)


def _notes(main: dict, L: int) -> str:
    """Plain-language reading of the measured numbers (the numbers are computed)."""
    def rho(a, v, i):
        return main[key(a, v, i)]["decay_factor"]

    return (
        f"Reading the numbers. With Xavier weights a sigmoid layer passes the gradient back "
        f"multiplied by about rho = {rho('sigmoid', 'plain', 'xavier'):.3f} (at most 0.25: "
        f"sigma' <= 0.25 times a weight gain near 1); He weights (gain sqrt 2) give "
        f"{rho('sigmoid', 'plain', 'he'):.3f}, still vanishing. With N(0,1) weights the large "
        f"weights offset the small sigma' (rho = {rho('sigmoid', 'plain', 'normal'):.3f}), "
        f"but the units are saturated (part c) and tanh with N(0,1) explodes instead "
        f"(rho = {rho('tanh', 'plain', 'normal'):.2f}): the seed's 'exploding' case. "
        f"BatchNorm removes the dependence on the weight scale; with ReLU it makes gradients "
        f"grow toward the input (rho = {rho('relu', 'bn', 'he'):.2f}), a known effect of "
        f"BatchNorm at initialisation, not a vanishing one. In residual nets ||dL/dW_l|| "
        f"rises toward the output because the residual stream h_l grows with l, while the "
        f"back-propagated signal ||dL/dh_l|| does not vanish (per-layer factor "
        f"{main[key('sigmoid', 'residual', 'xavier')]['signal_decay_factor']:.2f} for the "
        f"residual sigmoid net vs "
        f"{main[key('sigmoid', 'plain', 'xavier')]['signal_decay_factor']:.2f} for the plain "
        f"one; all in result numbers 'hidden_grad_norms').")
