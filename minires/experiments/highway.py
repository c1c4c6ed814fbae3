"""Highway networks versus ResNets: gated shortcuts, their gate bias, and the gates they learn.

Highway networks (Srivastava, Greff & Schmidhuber 2015, "Training Very Deep Networks"; seed
article 003) were the first very deep nets trained with plain SGD.  Each layer mixes a
transform H(x) with its carried input through a learned *transform gate* T(x) in (0, 1):

    y = H(x) T(x) + x (1 - T(x)),      T(x) = sigmoid(W_T x + b_T)

When T -> 0 the layer passes x through; when T -> 1 it is a plain layer.  Srivastava et al.
suggest initialising b_T negative (e.g. -1 or -3), so that every layer starts biased toward
carrying its input, which helps to bridge long-range dependencies early in training.  The ResNet
paper (section 2) contrasts its own shortcuts: identity, parameter-free and never closed,
so "all information is always passed through", whereas a highway layer whose gate closes
the carry "represents non-residual functions"; and highway networks "have not demonstrated
accuracy gains with extremely increased depth".  Seed 003 sums it up: ResNet is a highway
network whose shortcut has no gate.

What is measured, at the depth where a plain net fails here (56 layers: 27 blocks of two
3x3 convolutions, the layout of ResNet-56; the tests use 20), with one recipe and seed for
all five nets.  Srivastava et al. show the highway's benefit in *very deep* nets (their
Figure 1: plain nets of 50 and 100 layers stall, highway nets of the same depth train); at
20 layers the BatchNorm plain net of the degradation demonstration trains fine, so the
comparison would test nothing:

* plain-56 and ResNet-56 (the nets the other demonstrations use, from the shared cache);
* highway-56 with the transform-gate bias initialised to 0, -1 and -3 (T starts at 0.50,
  0.27 and 0.047 everywhere: the gate's weights start at 0);
* training curves, final training loss and error (an eval-mode pass over the whole
  training set after the last epoch) and test error;
* after training, the mean transform-gate value of every highway block
  (``HighwayBlock.last_gate_mean`` after a forward pass on test images, eval mode): how
  much of each block's output is its transform H(x) rather than its carried input.

Verdicts use the statistics of :mod:`minires.experiments.common` on the final training
error (eval mode, whole training set): "A at least as well as B" is ``at_most(A, B)``, "A
better than B" is ``greater(B, A)``; one seed, so the standard error is the binomial one of
a difference of two error rates on the n training images.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from minires.experiments.common import (
    DemoConfig,
    DemoResult,
    Verdict,
    at_most,
    demonstrate,
    error_rate_se,
    forward_eval,
    greater,
    pyplot,
    save_figure,
)
from minires.experiments.training import (
    RunSpec,
    load_split,
    recipe_for,
    run_numbers,
    train_spec,
)
from minires.models import HighwayBlock, count_parameters, summary

NAME = "highway"
TITLE = "Highway networks vs ResNets: gated vs identity shortcuts"

CLAIM = (
    "At equal depth, deep enough for the plain net to fail (56 layers), a highway network "
    "trains better than the plain net; "
    "initialising its transform-gate bias negative (-1, -3) trains at least as well as 0; "
    "the ResNet, whose shortcut has no gate and no parameters, trains at least as well as "
    "the best highway net; and with the bias started at -3 the transform gates stay mostly "
    "shut after training (mean T < 0.5: each block mostly carries its input, its gated "
    "shortcut mostly open).")
SOURCE = (
    "Srivastava, Greff & Schmidhuber 2015, 'Highway Networks' and 'Training Very Deep "
    "Networks' (transform gate; a negative gate-bias initialisation, e.g. -1 or -3, biases "
    "the net toward carrying at the start and lets learning proceed in very deep nets; "
    "Figure 1: plain nets of 50-100 layers stall where highway nets train; the trained "
    "gates' behaviour); seed article 003 "
    "(highway networks and ResNets: the ResNet shortcut is a highway whose gate is "
    "removed); He et al. 2016, section 2 (highway shortcuts are gated and data-dependent, "
    "identity shortcuts are never closed).")

GATE_BIASES = (0.0, -1.0, -3.0)
CLOSED = 0.5  # transform gate "mostly shut" (the block mostly carries): mean T below this
HIGHWAYS = tuple(f"{b:g}" for b in GATE_BIASES)  # the highway nets' keys
NEGATIVES = tuple(k for k in HIGHWAYS if float(k) < 0)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def at_least_as_well(candidate: dict, reference: dict, n: int, names=("A", "B")):
    """common.at_most on the final training errors (one seed: binomial SE on n images)."""
    a, b = candidate["train_error"], reference["train_error"]
    return at_most(*names, [a], [b], measurement_se=error_rate_se(a, b, n))


def better(candidate: dict, reference: dict, n: int, names=("A", "B")):
    """"candidate trains better": common.greater(reference, candidate) on training error."""
    a, b = reference["train_error"], candidate["train_error"]
    return greater(names[1], names[0], [a], [b], measurement_se=error_rate_se(a, b, n))


def gate_means(model, images: np.ndarray) -> list:
    """Mean transform gate T of every highway block on ``images`` (eval mode, no graph)."""
    forward_eval(model, images)
    return [float(block.last_gate_mean) for _, block in model.blocks()
            if isinstance(block, HighwayBlock)]


def depth_for(config: DemoConfig) -> int:
    """56 layers (20 in the tests: a tiny run only exercises the code)."""
    return config.pick(tiny=20, quick=56, full=56)


def label(kind: str, depth: int) -> str:
    return {"plain": f"plain-{depth}", "resnet": f"ResNet-{depth}"}.get(
        kind, f"highway-{depth}, b_T = {kind}")


def gate_image_count(config: DemoConfig) -> int:
    return config.pick(100, 500, 1000)


# ---------------------------------------------------------------------------- setup


def setup(config: DemoConfig) -> str:
    """What is built and how it is compared, fixed before anything is measured."""
    recipe, depth = recipe_for(config), depth_for(config)
    n_train = len(load_split(config, "train", recipe.train_size)[1])
    n_gate = len(load_split(config, "test", gate_image_count(config))[1])
    return (
        f"Five {depth}-layer nets on {config.dataset} (widths "
        f"{'/'.join(map(str, recipe.widths))}, {(depth - 2) // 2} blocks of two 3x3 "
        f"convolutions, option-A "
        f"shape changes), seed {config.seed}, one recipe: {recipe.epochs} epochs of SGD "
        f"(batch {recipe.batch_size}, lr {recipe.lr}, {recipe.warmup_epochs:g} warm-up "
        f"epoch(s), /10 at 50% and 75%, momentum 0.9, weight decay 1e-4) on {n_train} "
        f"training images. Highway blocks: y = H(x) T(x) + x (1 - T(x)), H = BasicBlock's "
        f"body + ReLU, T = sigmoid(conv3x3(x) + b_T) with the gate's weights 0 and b_T = "
        f"0, -1 or -3 at the start. Training loss/error: an eval-mode pass over the "
        f"training set after the last epoch. Gate values: mean of T over {n_gate} test "
        f"images per block, eval mode, after training. 'At least as well': training error "
        f"lower, or higher by at most 2 standard errors of a difference of two error rates "
        f"on {n_train} images; 'better': lower by more than 2 standard errors.")


# ---------------------------------------------------------------------------- measurement


def measure(config: DemoConfig) -> dict:
    """Train (or load) the plain net, the ResNet and the highway net with three gate biases
    (all of :func:`depth_for` layers); per net its size, final training loss/error, test
    error, curve and (highway) gates per block."""
    recipe, depth = recipe_for(config), depth_for(config)
    gate_images = load_split(config, "test", gate_image_count(config))[0]
    runs = {kind: train_spec(config, spec) for kind, spec in planned(config).items()}
    stats = {}
    for kind, run_ in runs.items():
        history = run_.history
        entry = run_numbers(run_, "train_loss") | {
            "parameters": count_parameters(run_.model),
            "macs": summary(run_.model, gate_images.shape[1:], print_fn=None).macs,
            "seconds_per_epoch": float(np.mean(history["epoch_time"])),
            "test_error_per_epoch": history["test_error"],
        }
        if kind not in ("plain", "resnet"):
            entry["gate_bias"] = float(kind)
            entry["initial_gate"] = sigmoid(float(kind))
            entry["gate_per_block"] = gate_means(run_.model, gate_images)
            entry["mean_gate"] = float(np.mean(entry["gate_per_block"]))
        stats[kind] = entry
    n_train = len(load_split(config, "train", recipe.train_size)[1])
    return {"nets": stats, "best_highway": best_highway(stats), "n_train": n_train,
            "depth": depth,
            "recipe": dict(recipe.__dict__)}


def planned(config: DemoConfig) -> dict:
    """{net key: RunSpec}: the plain net and the ResNet (shared with the degradation
    demonstration through the cache) and the three highway nets."""
    recipe, depth = recipe_for(config), depth_for(config)
    specs = {kind: RunSpec.of(f"{kind}{depth}", config.seed, recipe, label=label(kind, depth))
             for kind in ("plain", "resnet")}
    for bias in GATE_BIASES:
        specs[f"{bias:g}"] = RunSpec.of(f"highway{depth}", config.seed, recipe,
                                        label=f"highway-{depth} (gate bias {bias:g})",
                                        gate_bias=bias)
    return specs


def planned_runs(config: DemoConfig) -> list:
    """The runs :func:`measure` asks for (trained by ``demo`` in parallel beforehand)."""
    return list(planned(config).values())


def best_highway(stats: dict) -> str:
    """The highway net with the lowest final training error (ties: training loss)."""
    return min(HIGHWAYS, key=lambda k: (stats[k]["train_error"], stats[k]["train_loss"]))


# ---------------------------------------------------------------------------- verdicts


def comparisons(numbers: dict) -> dict:
    """The statistical comparisons the verdicts rest on, by name."""
    stats, n, best = numbers["nets"], numbers["n_train"], numbers["best_highway"]

    def name(kind):
        return label(kind, numbers["depth"])

    rules = {f"{k}<=0": at_least_as_well(stats[k], stats["0"], n, (name(k), name("0")))
             for k in NEGATIVES}
    rules["best>plain"] = better(stats[best], stats["plain"], n, (name(best), name("plain")))
    rules["resnet<=best"] = at_least_as_well(stats["resnet"], stats[best], n,
                                             (name("resnet"), name(best)))
    return rules


def verdicts(numbers: dict) -> list:
    """One verdict per claim, each on one rule of :mod:`minires.experiments.common`."""
    stats, best, rules = numbers["nets"], numbers["best_highway"], comparisons(numbers)
    low, lowest = stats[f"{min(GATE_BIASES):g}"], min(GATE_BIASES)

    def ev(k):
        return rules[k].evidence(100, " points")

    return [
        Verdict("A negative initial gate bias (-1 and -3) trains at least as well as 0 "
                "(training error, <= 0 or within 2 standard errors)",
                all(rules[f"{k}<=0"].holds for k in NEGATIVES),
                "; ".join(ev(f"{k}<=0") for k in NEGATIVES)),
        Verdict("Highway trains better than plain at the same depth (best gate bias, "
                "training error lower by more than 2 standard errors)",
                rules["best>plain"].holds, ev("best>plain")),
        Verdict("The ResNet trains at least as well as the best highway net (training error)",
                rules["resnet<=best"].holds,
                f"{ev('resnet<=best')} ({stats['resnet']['parameters']:,} vs "
                f"{stats[best]['parameters']:,} parameters)"),
        Verdict(f"With b_T = {lowest:g} at the start the transform gates stay mostly shut "
                f"after training (mean T < {CLOSED}: the blocks mostly carry their input)",
                low["mean_gate"] < CLOSED,
                f"mean T = {low['mean_gate']:.3f} (started at {low['initial_gate']:.3f}; per "
                f"block {min(low['gate_per_block']):.3f}..{max(low['gate_per_block']):.3f}); "
                f"b_T = 0: {stats['0']['mean_gate']:.3f} (started at 0.5)"),
    ]


# ---------------------------------------------------------------------------- report


def report(result: DemoResult, numbers: dict) -> None:
    """The tables, the notes and the comparisons' numbers, from the numbers."""
    stats = numbers["nets"]
    result.numbers["comparisons"] = {k: d.as_dict() for k, d in comparisons(numbers).items()}
    rows = []
    for kind, s in stats.items():
        rows.append([label(kind, numbers["depth"]), s["parameters"], s["macs"], s["train_loss"],
                     100 * s["train_error"], 100 * s["test_error"], s.get("initial_gate", "-"),
                     s.get("mean_gate", "-")])
    result.table(f"Five {numbers['depth']}-layer nets, one recipe (errors in %; MACs = "
                 "multiply-adds per image; T = transform gate)",
                 ["net", "parameters", "MACs", "train loss", "train error", "test error",
                  "T at start", "mean T after training"], rows)
    n_blocks = len(stats[HIGHWAYS[0]]["gate_per_block"])
    result.table("Mean transform gate T per block after training (block 1 = input side)",
                 ["block"] + [f"b_T = {k} at start" for k in HIGHWAYS],
                 [[i + 1] + [stats[k]["gate_per_block"][i] for k in HIGHWAYS]
                  for i in range(n_blocks)])
    resnet, zero = stats["resnet"], stats["0"]
    moved = {k: stats[k]["mean_gate"] - stats[k]["initial_gate"] for k in HIGHWAYS}
    gates = stats[HIGHWAYS[0]]["gate_per_block"]
    closed = f"{min(GATE_BIASES):g}"
    result.notes = (
        "Gate movement during training (mean T after minus at the start): "
        + ", ".join(f"b_T = {k}: {v:+.3f}" for k, v in moved.items())
        + f"; with b_T = 0 the last block's gate ends at {gates[-1]:.2f} against "
        f"{gates[0]:.2f} for the first. A transform gate that starts nearly shut (b_T = {closed}) "
        f"leaves each block almost its carry (the identity, zero-padded where the channels "
        f"double), so the net learns only through the small transform share: after this "
        f"training its loss is "
        f"{stats[closed]['train_loss'] / zero['train_loss']:.1f}x that of b_T = 0, and the "
        f"plain net of the same depth ends at {100 * stats['plain']['train_error']:.1f}% "
        f"training error against {100 * stats[numbers['best_highway']]['train_error']:.1f}% "
        f"for the best highway net. The highway nets carry "
        f"{stats[HIGHWAYS[0]]['parameters'] - resnet['parameters']:,} more parameters than "
        f"the ResNet (the gate convolutions) and "
        f"{stats[HIGHWAYS[0]]['macs'] / resnet['macs']:.2f}x its multiply-adds per image.")


def run(config: DemoConfig) -> DemoResult:
    """setup -> measure -> verdicts, then the report and the figure
    (:func:`minires.experiments.common.demonstrate`)."""
    return demonstrate(sys.modules[__name__], config)


# ---------------------------------------------------------------------------- figure


def plots(config: DemoConfig, numbers: dict) -> list:
    """Training loss per epoch for the five nets; mean gate per block for the highways."""
    stats = numbers["nets"]
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    styles = {"plain": ("black", "--"), "resnet": ("C3", "-")}
    for i, (kind, s) in enumerate(stats.items()):
        colour, ls = styles.get(kind, (f"C{i - 2}", "-"))
        ax1.plot(s["curve"]["x"], s["curve"]["train_loss"], color=colour, ls=ls, lw=1.4,
                 label=label(kind, numbers["depth"]))
    ax1.set_yscale("log")
    ax1.set(xlabel=stats["plain"]["curve"]["unit"], ylabel="training loss (train mode)",
            title=f"{numbers['depth']}-layer nets: training loss")
    ax1.legend(fontsize=7)
    for i, (kind, s) in enumerate(stats.items()):
        if "gate_per_block" not in s:
            continue
        gates = s["gate_per_block"]
        blocks = np.arange(1, len(gates) + 1)
        ax2.plot(blocks, gates, color=f"C{i - 2}", marker="o", ms=4, lw=1.5,
                 label=f"b_T = {kind} (start {s['initial_gate']:.2f})")
        ax2.axhline(s["initial_gate"], color=f"C{i - 2}", ls=":", lw=1)
    ax2.axhline(CLOSED, color="grey", lw=0.8)
    ax2.set(xlabel="highway block (1 = input side)", ylabel="mean transform gate T",
            title="after training (dotted: at the start)", ylim=(0, 1))
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return [save_figure(fig, config, f"{NAME}_gates.png")]
