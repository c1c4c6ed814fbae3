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

import sys
from dataclasses import asdict, dataclass

import numpy as np

from minires import backend, nn
from minires.autograd import Tensor
from minires.data import load_mnist
from minires.experiments.common import (
    DemoConfig,
    DemoResult,
    Verdict,
    decay_factor,
    demonstrate,
    fmt,
    lazy,
    progress,
)
from minires.experiments.mlp import INITS, MLP, gradient_norms

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
VARIANTS = ("plain", "bn", "residual")

SIGMOID_BOUND = 0.25  # max of sigma'(x) = sigma(x)(1 - sigma(x)), reached at x = 0
SATURATION = 0.45  # a sigmoid unit counts as saturated when |a - 0.5| > 0.45 (a < .05 or > .95)
NEAR_HALF = 0.05  # ... and as collapsed onto 0.5 when |a - 0.5| < 0.05 (a in (0.45, 0.55))
VANISH_RATIO = 1e-3  # the sigmoid claim: first/last hidden-layer gradient ratio below this
ALIVE_SPREAD = 10.0  # "within one order of magnitude": max/min hidden-layer norm below this
HISTOGRAM_BINS = np.linspace(0, 1, 41)  # the activation histograms' bins over (0, 1)

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
#
# The MLP and its one-pass gradient norms: minires.experiments.mlp.


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
    orders of magnitude.  Returns {str(depth): {key: {...}}}.
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
        results.setdefault(str(depth), {})[key(activation, variant, init)] = entry
    return results


def _geometric_mean(rows) -> np.ndarray:
    rows = np.maximum(np.asarray(rows, dtype=np.float64), np.finfo(np.float64).tiny)
    return 10.0 ** np.log10(rows).mean(axis=0)


# ---------------------------------------------------------------------------- (c) activations


def activation_statistics(depth: int, width: int, weight_std, images: np.ndarray,
                          seed: int) -> dict:
    """Sigmoid activations of every hidden layer of a plain MLP at initialisation.

    ``weight_std`` is a number (all weights N(0, std^2)) or ``"xavier"``.  Forward hooks on
    the Sigmoid modules collect each layer's outputs.  Returns, per layer, their standard
    deviation, mean, the fraction of saturated
    units (|a - 0.5| > 0.45, where sigma' < 0.05) and the fraction collapsed onto 0.5
    (|a - 0.5| < 0.05: the unit barely depends on its input, so it carries no signal), and
    the histogram of its outputs (counts in the bins :data:`HISTOGRAM_BINS`).
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
        "std_per_layer": [float(a.std()) for a in outputs],
        "mean_per_layer": [float(a.mean()) for a in outputs],
        "saturated_per_layer": [float((np.abs(a - 0.5) > SATURATION).mean()) for a in outputs],
        "saturated_overall": float(np.mean([(np.abs(a - 0.5) > SATURATION).mean()
                                            for a in outputs])),
        "near_half_per_layer": [float((np.abs(a - 0.5) < NEAR_HALF).mean()) for a in outputs],
        "histogram": [np.histogram(a.ravel(), bins=HISTOGRAM_BINS)[0].tolist()
                      for a in outputs],
    }


# ---------------------------------------------------------------------------- setup


def setup(config: DemoConfig) -> str:
    """What is built and measured, fixed before anything is measured."""
    sizes = sizes_for(config)
    L = sizes.main_depth
    return (
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


# ---------------------------------------------------------------------------- measurement


def max_sigma_prime(low: float = -20.0, high: float = 20.0, points: int = 400001) -> float:
    """max of sigma'(x) = sigma(x) (1 - sigma(x)) on a grid of [low, high] (0.25, at 0)."""
    grid = np.linspace(low, high, points)
    return float((sigmoid_np(grid) * (1 - sigmoid_np(grid))).max())


def measure(config: DemoConfig) -> dict:
    """(a), (b), (c), JSON-able and in float64: {"chain", "gradients" (per depth as a
    string, per configuration), "activations" (statistics per weight scale), "sizes",
    "thresholds"}."""
    sizes = sizes_for(config)
    with backend.default_dtype(np.float64):
        images, labels = load_mnist("train", dtype=np.float64)
        images = images.reshape(len(images), -1)

        # (a) the seed's one-neuron chain, with weights drawn from N(0, 1.5^2)
        rng = np.random.default_rng(config.seed)
        chain = sigmoid_chain(rng.normal(0, 1.5, 4), rng.normal(0, 0.5, 4), x=1.0)
        chain["max_sigma_prime_on_grid"] = max_sigma_prime()

        # (b) gradient norms of deep MLPs
        gradients = measure_gradients(config, sizes, images, labels)

        # (c) activation histograms of a sigmoid MLP
        hist_x = images[:sizes.hist_batch]
        activations = {label_: activation_statistics(sizes.main_depth, sizes.width, std,
                                                     hist_x, config.seed)
                       for label_, std in (("std 1", 1.0), ("std 0.01", 0.01),
                                           ("Xavier", "xavier"))}
    return {"chain": chain, "gradients": gradients, "activations": activations,
            "sizes": asdict(sizes),
            "thresholds": {"sigmoid_bound": SIGMOID_BOUND, "saturation": SATURATION,
                           "vanish_ratio": VANISH_RATIO, "alive_spread": ALIVE_SPREAD}}


# ---------------------------------------------------------------------------- verdicts

# The configurations that should keep a deep MLP's gradients alive, with their names.
ALIVE = ((("relu", "plain", "he"), "ReLU + He"),
         (("sigmoid", "bn", "xavier"), "sigmoid + BatchNorm (Xavier)"),
         (("sigmoid", "residual", "xavier"), "residual sigmoid (Xavier)"))


def sigmoid_ratios(numbers: dict) -> list:
    """Sigmoid + Xavier's first/last hidden-layer gradient ratio at each depth of the sweep."""
    return [numbers["gradients"][str(d)][key("sigmoid", "plain", "xavier")]["ratio_hidden"]
            for d in numbers["sizes"]["depths"]]


def verdicts(numbers: dict) -> list:
    """One verdict per claim, in the order (a) the chain, (b) the deep MLPs, (c) the
    activations."""
    chain, sizes, acts = numbers["chain"], numbers["sizes"], numbers["activations"]
    L = sizes["main_depth"]
    main = numbers["gradients"][str(L)]
    sig, sig_he = main[key("sigmoid", "plain", "xavier")], main[key("sigmoid", "plain", "he")]
    sig_normal = main[key("sigmoid", "plain", "normal")]
    ratios = sigmoid_ratios(numbers)
    alive = [(main[key(*c)], why) for c, why in ALIVE]
    big, small, xavier = acts["std 1"], acts["std 0.01"], acts["Xavier"]
    return [
        Verdict("Chain rule: symbolic dy/db1 = sigma'(z4)w4 sigma'(z3)w3 sigma'(z2)w2 "
                "sigma'(z1) equals autograd (float64, relative error < 1e-10)",
                chain["rel_error"] < 1e-10,
                f"symbolic {chain['symbolic']:.15e}, autograd {chain['autograd']:.15e}, "
                f"relative error {chain['rel_error']:.1e}"),
        Verdict("Every sigmoid factor is at most 0.25 (sigma' = sigma(1 - sigma), max at 0)",
                max(*chain["sigma_prime"], chain["max_sigma_prime_on_grid"]) <= SIGMOID_BOUND,
                f"chain factors {', '.join(fmt(s) for s in chain['sigma_prime'])}; max of "
                f"sigma' on [-20, 20] = {chain['max_sigma_prime_on_grid']:.6f}"),
        Verdict(f"A {L}-layer sigmoid MLP (Xavier) has first/last hidden-layer gradient ratio "
                f"below {VANISH_RATIO:g}",
                sig["ratio_hidden"] < VANISH_RATIO,
                f"||dL/dW_2|| / ||dL/dW_{L - 1}|| = {sig['ratio_hidden']:.2e} (N(0,1): "
                f"{sig_normal['ratio_hidden']:.2e}, He: {sig_he['ratio_hidden']:.2e}); layer 1 "
                f"over layer {L}: {sig['ratio_all']:.2e}"),
        Verdict("Sigmoid + Xavier: the fitted per-layer factor rho is at most the 0.25 bound "
                "(Xavier keeps the weights' gain near 1, leaving sigma' as the factor)",
                sig["decay_factor"] <= SIGMOID_BOUND,
                f"rho = {sig['decay_factor']:.3f} (He, gain sqrt 2: "
                f"{sig_he['decay_factor']:.3f}; N(0,1): {sig_normal['decay_factor']:.3f})"),
        Verdict("Sigmoid + Xavier: the ratio shrinks with every increase in depth",
                all(b < a for a, b in zip(ratios, ratios[1:], strict=False)),
                ", ".join(f"L={d}: {r:.1e}" for d, r in zip(sizes["depths"], ratios,
                                                            strict=True))),
    ] + [
        Verdict(f"{why}: {L}-layer gradient norms stay within one order of magnitude "
                f"(max/min over hidden layers 2..{L - 1} < {ALIVE_SPREAD:g})",
                e["spread_hidden"] < ALIVE_SPREAD,
                f"max/min = {e['spread_hidden']:.2f}, ratio W_2/W_{L - 1} = "
                f"{e['ratio_hidden']:.2f}, rho = {e['decay_factor']:.3f}; all layers: max/min "
                f"{e['spread_all']:.1f}")
        for e, why in alive
    ] + [
        Verdict("Weights N(0,1) saturate sigmoid units (more than half at |a - 0.5| > 0.45)",
                big["saturated_overall"] > 0.5,
                f"{100 * big['saturated_overall']:.1f}% saturated over all layers"),
        Verdict(f"Weights N(0,0.01^2) collapse activations onto 0.5 (over 90% of the last "
                f"hidden layer's units within {NEAR_HALF} of 0.5, none saturated)",
                small["near_half_per_layer"][-1] > 0.9 and small["saturated_overall"] == 0,
                f"{100 * small['near_half_per_layer'][-1]:.1f}% within {NEAR_HALF} of 0.5 "
                f"(Xavier: {100 * xavier['near_half_per_layer'][-1]:.1f}%), last-layer std "
                f"{small['std_per_layer'][-1]:.3f}, {100 * small['saturated_overall']:.1f}% "
                f"saturated"),
        Verdict("Xavier gives a healthy spread (every hidden layer's std above 0.05, under 5% "
                "saturated)",
                min(xavier["std_per_layer"]) > 0.05 and xavier["saturated_overall"] < 0.05,
                f"std {min(xavier['std_per_layer']):.3f}..{max(xavier['std_per_layer']):.3f}, "
                f"{100 * xavier['saturated_overall']:.1f}% saturated"),
    ]


# ---------------------------------------------------------------------------- the demonstration


# The figures, the tables and the notes live in the report module, which imports this one.
plots = lazy("minires.experiments.vanishing_report", "plots")
report = lazy("minires.experiments.vanishing_report", "report")


def run(config: DemoConfig) -> DemoResult:
    """setup -> measure -> verdicts, then the report and the figures
    (:func:`minires.experiments.common.demonstrate`)."""
    return demonstrate(sys.modules[__name__], config)
