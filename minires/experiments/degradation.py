"""Degradation: a deeper plain net has *higher training error*; a deeper ResNet does not.

The observation that motivates residual learning (He et al. 2016, section 1, Figure 1;
section 4.2, Figure 6, Table 6; seed 001: "随着网络深度的增加,正确率开始饱和甚至下降,
称之为网络的退化(degradation)问题"; seed 003 on Figure 1).  A 56-layer plain net contains
every function a 20-layer one does (the extra 36 layers could be identities), yet SGD
finds a *worse* solution for it, and worse on the training set itself: the problem is
optimisation, not overfitting (overfitting would mean a lower training error and a higher
test error).  Reformulating every pair of layers as F(x) + x, with the same layers and
parameters, removes it: ResNet-56 trains at least as well as ResNet-20 (paper: 6.97% vs
8.75% test error on CIFAR-10) and far better than plain-56.

What is measured.  plain-20, plain-56, ResNet-20 and ResNet-56 (the CIFAR layout of
section 4.2: 6n+2 layers, option-A shortcuts; the plain twins have exactly the same layers
and parameters) are trained with the same recipe and the same seed (initial weights and
data order), by :func:`minires.experiments.training.train_or_load`: the trained nets are
cached and shared with the identity (Figure 7) and lesion demonstrations.  Quick mode
repeats the four trainings for seeds ``config.seed``, ``+1``, ``+2`` and reports
mean +- std.  Three errors are recorded:

* *training error, train mode*: the paper's thin curves.  Each mini-batch's error as it is
  trained on (BatchNorm with batch statistics, the weights of that moment); the table's
  value is the mean over the last epoch, when the learning rate is at its smallest.
* *training error, eval mode*: the whole training set once more, after training, with
  fixed weights and BatchNorm's running statistics: the cleaner measure of how well the
  net fits its training data.
* *test error* (eval mode): the paper's bold curves, measured after every epoch.

The verdicts compare means over the seeds and say in how many seeds each comparison holds.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

import numpy as np

from minires.experiments.common import (
    SE_MULTIPLE,
    DemoConfig,
    DemoResult,
    Verdict,
    at_most,
    demonstrate,
    error_rate_se,
    fmt,
    greater,
    mean_std,
    pyplot,
    save_figure,
)
from minires.experiments.training import RunSpec, default_recipe, make_loaders, train_spec

NAME = "degradation"
TITLE = "Degradation: deeper plain nets train worse, deeper ResNets do not"

CLAIM = (
    "A 56-layer plain network has a higher *training* error than a 20-layer one trained "
    "the same way (the degradation problem): an optimisation difficulty, not overfitting, "
    "since its test error is higher too. With identity shortcuts (same layers, same "
    "parameters) the deeper net trains at least as well as the shallower one "
    "(ResNet-56 <= ResNet-20) and much better than its plain twin.")
SOURCE = (
    "He et al. 2016, section 1 and Figure 1 (20- vs 56-layer plain nets on CIFAR-10), "
    "section 4.2, Figure 6 and Table 6 (plain vs residual nets of 20-110 layers; thin "
    "curves training error, bold test error); seed article 001 (the paper in Chinese: "
    "'the 56-layer net has clearly higher training and test error than the 20-layer "
    "one'); seed article 003 (Figure 1: not overfitting, since the deeper net's training "
    "error itself stays higher).")

NETS = ("plain20", "plain56", "resnet20", "resnet56")
LABELS = {"plain20": "plain-20", "plain56": "plain-56", "resnet20": "ResNet-20",
          "resnet56": "ResNet-56"}
DEPTHS = {"plain20": 20, "plain56": 56, "resnet20": 20, "resnet56": 56}
COLOURS = {20: "C0", 56: "C3"}
KEYS = ("train_error", "train_error_eval", "test_error")  # the errors compared
# Converged: over its last epoch (lr / 100) ResNet-20's training loss falls by less than
# this fraction of the epoch before's (mean over seeds).
FLAT = 0.2


def seeds_for(config: DemoConfig) -> list:
    """config.seed (tiny, full) or config.seed, +1, +2 (quick)."""
    return [config.seed + s for s in range(config.pick(tiny=1, quick=3, full=1))]


def _final(history) -> dict:
    last = history[-1]
    return {"train_error": float(last["train_error"]),
            "train_loss": float(last["train_loss"]),
            "train_error_eval": float(last["train_error_eval"]),
            "train_loss_eval": float(last["train_loss_eval"]),
            "test_error": float(last["test_error"]),
            "test_loss": float(last["test_loss"])}


def _smooth(values, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def _steps_for_json(steps, limit: int = 5000):
    """Per-step records for the JSON: as they are up to ``limit`` steps; longer runs (the
    full recipe's 64k) as ``every``-step means, so the file stays small."""
    if not steps or len(steps["train_error"]) <= limit:
        return steps
    every = -(-len(steps["train_error"]) // (limit // 2))
    return {"every": every} | {
        key: [float(np.mean(values[i:i + every])) for i in range(0, len(values), every)]
        for key, values in steps.items()}


# ---------------------------------------------------------------------------- setup


def setup(config: DemoConfig) -> str:
    """What is built and how it is trained, fixed before anything is measured."""
    recipe = default_recipe(config)
    seeds = seeds_for(config)
    size = len(make_loaders(config, recipe, seeds[0])[0])  # iterations per epoch
    return (
        f"plain-20, plain-56, ResNet-20 and ResNet-56 (CIFAR layout of section 4.2, 6n+2 "
        f"layers, option-A shortcuts; plain twins have the same layers and parameters), "
        f"widths {'/'.join(map(str, recipe.widths))}, on {config.dataset.upper()} "
        f"({recipe.train_size or 'all'} training images, test set of "
        f"{recipe.test_size or 'all'}"
        f"{f', averaged down {recipe.downsample}x' if recipe.downsample > 1 else ''}), "
        f"{'augmented' if recipe.augment else 'no augmentation'}. One recipe for all: "
        f"{recipe.epochs} epochs of batch {recipe.batch_size} ({size} iterations per "
        f"epoch), SGD lr {recipe.lr} with {recipe.warmup_epochs} epoch(s) of linear "
        f"warm-up from lr/10, momentum 0.9, weight decay 1e-4, lr / 10 at 50% and 75% of "
        f"training. Seed(s) {', '.join(map(str, seeds))}: each fixes the initial weights "
        f"and the data order, the same for all four nets; values are mean ± std "
        f"(population) over the seeds. Training error *train mode* = mean error of the "
        f"mini-batches as they were trained on during the last epoch (the paper's thin "
        f"curves); *eval mode* = the whole training set after training, fixed weights, "
        f"BatchNorm running statistics; test error in eval mode.")


# ---------------------------------------------------------------------------- measurement


def planned_runs(config: DemoConfig) -> list:
    """The four nets for every seed (trained by ``demo`` in parallel beforehand)."""
    return [RunSpec.of(net, seed, label=f"{LABELS[net]} (degradation)")
            for seed in seeds_for(config) for net in NETS]


def measure(config: DemoConfig) -> dict:
    """Train (or load) the four nets for every seed; their final errors and histories."""
    recipe = default_recipe(config)
    seeds = seeds_for(config)
    runs = {(spec.name, spec.seed): train_spec(config, spec) for spec in planned_runs(config)}
    return {**numbers_from_runs(recipe, seeds, runs),
            "mode": "tiny" if config.tiny else config.mode}


def numbers_from_runs(recipe, seeds: list, runs: dict) -> dict:
    """The numbers of {(net, seed): TrainedRun}: final errors per net and seed, parameters,
    training seconds, and each run's history and per-step records."""
    first = runs[(NETS[0], seeds[0])]
    return {
        "recipe": asdict(recipe), "seeds": list(seeds),
        "parameters": {net: int(runs[(net, seeds[0])].model.num_parameters()) for net in NETS},
        "n_train": int(recipe.train_size
                       or first.history[0]["iterations"] * recipe.batch_size),
        "final": {net: [_final(runs[(net, s)].history) for s in seeds] for net in NETS},
        "epoch_loss": {net: [[float(v) for v in runs[(net, s)].history["train_loss"]]
                             for s in seeds] for net in NETS},
        "training_seconds": {net: [runs[(net, s)].seconds for s in seeds] for net in NETS},
        "runs": {f"{net}/seed{s}": {"key": runs[(net, s)].key,
                                    "history": list(runs[(net, s)].history),
                                    "steps": runs[(net, s)].steps}
                 for net in NETS for s in seeds}}


# ---------------------------------------------------------------------------- verdicts


def values(numbers: dict, net: str, key: str) -> np.ndarray:
    """``key`` of ``net``'s final record, one value per seed."""
    return np.array([f[key] for f in numbers["final"][net]])


def compare(numbers: dict, a: str, b: str, key: str, relation: str) -> dict:
    """The verdict statistic (common.at_most / common.greater) of a's ``key`` against b's
    over the seeds; with one seed the binomial SE of the two error rates on n_train."""
    va, vb = values(numbers, a, key), values(numbers, b, key)
    se = error_rate_se(va.mean(), vb.mean(), numbers["n_train"]) if len(va) == 1 else None
    rule = at_most if relation == "<=" else greater
    d = rule(LABELS[a], LABELS[b], va, vb, measurement_se=se)
    diff = va - vb
    return {"mean_difference": d.mean, "se": d.se, "per_seed": diff.tolist(),
            "seeds_holding": int((diff > 0).sum()), "seeds": len(diff),
            "holds": d.holds, "evidence": d.evidence(100, " points")}


def comparisons(numbers: dict) -> dict:
    """(i) plain-56 > plain-20, (ii) ResNet-56 <= ResNet-20, (iii) plain-56 > ResNet-56,
    each on the three errors."""
    return {"plain56_minus_plain20": {k: compare(numbers, "plain56", "plain20", k, ">")
                                      for k in KEYS},
            "resnet56_minus_resnet20": {k: compare(numbers, "resnet56", "resnet20", k, "<=")
                                        for k in KEYS},
            "plain56_minus_resnet56": {k: compare(numbers, "plain56", "resnet56", k, ">")
                                       for k in KEYS}}


def last_epoch_drop(numbers: dict, net: str = "resnet20") -> float:
    """How much ``net``'s last epoch lowered its training loss (train mode, epoch mean),
    as a fraction of the epoch before's: (L[E-1] - L[E]) / L[E-1], mean over seeds."""
    drops = [(loss[-2] - loss[-1]) / loss[-2]
             for loss in numbers.get("epoch_loss", {}).get(net, []) if len(loss) > 1]
    return float(np.mean(drops)) if drops else float("nan")


def pct(numbers: dict, net: str, key: str) -> str:
    v = 100 * values(numbers, net, key)
    return f"{v.mean():.2f}%" + (f" ± {v.std():.2f}" if len(v) > 1 else "")


def verdicts(numbers: dict) -> list:
    """One verdict per claim, each on the rules of :mod:`minires.experiments.common`."""
    c = comparisons(numbers)
    deg, res, fix = (c["plain56_minus_plain20"], c["resnet56_minus_resnet20"],
                     c["plain56_minus_resnet56"])

    def p(net, key="train_error"):
        return pct(numbers, net, key)

    drop = last_epoch_drop(numbers)
    curve = "; ".join(" -> ".join(f"{v:.3f}" for v in loss[-3:])
                      for loss in numbers.get("epoch_loss", {}).get("resnet20", []))
    return [
        Verdict(f"The nets are compared converged: over the last epoch ResNet-20's training "
                f"loss falls by less than {FLAT:.0%} (mean over seeds)",
                bool(drop < FLAT),
                f"last-epoch drop {drop:.1%} of the loss; last three epochs' mean training "
                f"loss per seed: {curve}"),
        Verdict("Degradation: plain-56 has a higher training error than plain-20 (train mode "
                f"and eval mode; mean difference over seeds beyond {SE_MULTIPLE:g} standard "
                "errors)",
                deg["train_error"]["holds"] and deg["train_error_eval"]["holds"],
                f"plain-56 {p('plain56')} vs plain-20 {p('plain20')}; train mode: "
                f"{deg['train_error']['evidence']}; eval mode: "
                f"{deg['train_error_eval']['evidence']}"),
        Verdict("Not overfitting: plain-56's test error is higher too (its higher error "
                f"starts on the training set; beyond {SE_MULTIPLE:g} standard errors)",
                deg["test_error"]["holds"] and deg["train_error_eval"]["holds"],
                f"test error plain-56 {p('plain56', 'test_error')} vs plain-20 "
                f"{p('plain20', 'test_error')}: {deg['test_error']['evidence']}; overfitting "
                f"would show a lower training error with a higher test error"),
        Verdict("ResNet-56 trains at least as well as ResNet-20 (training error, train mode "
                f"and eval mode: mean difference <= 0 or within {SE_MULTIPLE:g} standard "
                "errors)",
                res["train_error"]["holds"] and res["train_error_eval"]["holds"],
                f"ResNet-56 {p('resnet56')} vs ResNet-20 {p('resnet20')}; train mode: "
                f"{res['train_error']['evidence']}; eval mode: "
                f"{res['train_error_eval']['evidence']}; test {p('resnet56', 'test_error')} "
                f"vs {p('resnet20', 'test_error')}"),
        Verdict("ResNet-56 trains better than plain-56 (training error, train mode and eval "
                f"mode, beyond {SE_MULTIPLE:g} standard errors)",
                fix["train_error"]["holds"] and fix["train_error_eval"]["holds"],
                f"ResNet-56 {p('resnet56')} vs plain-56 {p('plain56')}; train mode: "
                f"{fix['train_error']['evidence']}; eval mode: "
                f"{fix['train_error_eval']['evidence']}; test {p('resnet56', 'test_error')} "
                f"vs {p('plain56', 'test_error')}"),
    ]


# ---------------------------------------------------------------------------- report


def report(result: DemoResult, numbers: dict) -> None:
    """The tables, the notes and the summary numbers, from the numbers."""
    seeds, final, params = numbers["seeds"], numbers["final"], numbers["parameters"]

    def plain_number(net, key):
        v = values(numbers, net, key)
        return mean_std(v) if len(v) > 1 else f"{v.mean():.4f}"

    seconds = {net: float(np.mean(numbers["training_seconds"][net])) for net in NETS}
    rows = [[LABELS[net], DEPTHS[net], params[net], pct(numbers, net, "train_error"),
             pct(numbers, net, "train_error_eval"), pct(numbers, net, "test_error"),
             plain_number(net, "train_loss"), seconds[net]] for net in NETS]
    result.table(
        f"Final errors (last epoch; mean ± std over {len(seeds)} seed(s))",
        ["net", "layers", "parameters", "training error (train mode, last epoch)",
         "training error (eval mode, end)", "test error (eval mode)",
         "training loss (train mode)", "training time (s)"], rows)
    if len(seeds) > 1:
        result.table("Per seed: training error (train mode, last epoch) / test error",
                     ["seed"] + [LABELS[n] for n in NETS],
                     [[s] + [f"{100 * final[n][i]['train_error']:.2f}% / "
                             f"{100 * final[n][i]['test_error']:.2f}%" for n in NETS]
                      for i, s in enumerate(seeds)])
    c = comparisons(numbers)
    result.numbers.update({
        "se_multiple": SE_MULTIPLE,
        "mean": {net: {k: float(values(numbers, net, k).mean()) for k in final[net][0]}
                 for net in NETS},
        "comparisons": c})
    for entry in result.numbers["runs"].values():  # the JSON keeps long runs short
        entry["steps"] = _steps_for_json(entry["steps"])
    result.notes = _notes(numbers.get("mode", "quick"), numbers["recipe"]["epochs"],
                          c["plain56_minus_plain20"], c["resnet56_minus_resnet20"],
                          c["plain56_minus_resnet56"], params)


def run(config: DemoConfig) -> DemoResult:
    """setup -> measure -> verdicts, then the report and the figure
    (:func:`minires.experiments.common.demonstrate`)."""
    return demonstrate(sys.modules[__name__], config)


# ---------------------------------------------------------------------------- figure


def plots(config: DemoConfig, numbers: dict) -> list:
    """Two panels (plain | ResNet): training error thin, test error bold, vs iteration."""
    plt = pyplot()
    seeds, recipe, runs = numbers["seeds"], numbers["recipe"], numbers["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    first = runs[f"{NETS[0]}/seed{seeds[0]}"]["history"]
    per_epoch = int(first[0]["iterations"])
    total = int(first[-1]["iterations"])
    window = max(1, per_epoch // 4)
    top = 0.0
    for ax, family in zip(axes, ("plain", "resnet"), strict=True):
        nets = [n for n in NETS if n.startswith(family)]
        for net in nets:
            colour = COLOURS[DEPTHS[net]]
            group = [runs[f"{net}/seed{s}"] for s in seeds]
            iters = [h["iterations"] for h in group[0]["history"]]
            if all(r["steps"] for r in group):  # per iteration, smoothed
                train = 100 * np.mean([_smooth(r["steps"]["train_error"], window)
                                       for r in group], 0)
                ax.plot(np.arange(1, len(train) + 1), train, color=colour, lw=0.9)
            else:  # per epoch (a run cached without per-step records)
                train = 100 * np.mean([[h["train_error"] for h in r["history"]]
                                       for r in group], 0)
                ax.plot(iters, train, color=colour, lw=0.9)
            test = 100 * np.mean([[h["test_error"] for h in r["history"]] for r in group], 0)
            ax.plot(iters, test, color=colour, lw=2.8, marker="o", ms=4.5)
            top = max(top, float(test.max()), float(train.max()))
        for fraction in (0.5, 0.75):
            ax.axvline(fraction * total, color="grey", ls=":", lw=0.8)
        ax.set(xlabel="iteration", xlim=(0, 1.02 * total),
               title=" vs ".join(LABELS[n] for n in nets))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, min(100.0, max(20.0, 1.05 * top)))
    handles = [plt.Line2D([], [], color=COLOURS[20], lw=2.8, label="20 layers"),
               plt.Line2D([], [], color=COLOURS[56], lw=2.8, label="56 layers"),
               plt.Line2D([], [], color="black", lw=0.9,
                          label=f"thin: training error (train mode, batches as trained, "
                                f"{window}-step mean)"),
               plt.Line2D([], [], color="black", lw=2.8, marker="o", ms=4.5,
                          label="bold: test error (eval mode, end of each epoch)"),
               plt.Line2D([], [], color="grey", ls=":", lw=0.8, label="lr / 10")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    mean = f"mean of {len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}"
    fig.suptitle(f"Degradation on {config.dataset.upper()}: {recipe['epochs']} epochs of "
                 f"batch {recipe['batch_size']}, widths "
                 f"{'/'.join(map(str, recipe['widths']))} ({mean})",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return [save_figure(fig, config, f"{NAME}_curves.png")]


def _notes(mode, epochs, deg, res, fix, params) -> str:
    """A plain reading of the numbers (every number computed)."""
    same = params["plain56"] == params["resnet56"] and params["plain20"] == params["resnet20"]
    text = (
        f"Reading the numbers. The 36 extra layers of plain-56 "
        f"({fmt(params['plain56'])} vs {fmt(params['plain20'])} parameters) change its "
        f"final training error by {100 * deg['train_error']['mean_difference']:+.2f} points "
        f"(train mode) and {100 * deg['train_error_eval']['mean_difference']:+.2f} points "
        f"(eval mode); adding shortcuts to the same layers "
        f"({'identical' if same else 'different'} parameter counts) changes the 56-layer "
        f"net's training error by {-100 * fix['train_error']['mean_difference']:+.2f} points. "
        f"ResNet-56 minus ResNet-20: {100 * res['train_error']['mean_difference']:+.2f} "
        f"points (train mode), {100 * res['train_error_eval']['mean_difference']:+.2f} "
        f"(eval mode), {100 * res['test_error']['mean_difference']:+.2f} (test).")
    diffs = 100 * np.asarray(res["train_error"]["per_seed"])
    if len(diffs) > 1:
        signs = int((diffs < 0).sum()), int((diffs > 0).sum())
        resolved = signs[0] == len(diffs) or signs[1] == len(diffs)
        text += (
            f" Per seed, ResNet-56 minus ResNet-20 (train mode) is "
            f"{', '.join(f'{d:+.2f}' for d in diffs)} points (std {diffs.std():.2f}): "
            + ("every seed agrees on the sign." if resolved else
               f"the seeds disagree on the sign ({signs[0]} lower, {signs[1]} higher), so "
               f"at this size the comparison of the two ResNets is within seed-to-seed "
               f"noise, unlike the plain-56 vs plain-20 gap."))
    if mode in ("quick", "tiny"):
        text += (
            f" The paper compares the nets at convergence (64k iterations on CIFAR-10, lr / "
            f"10 twice); here they train for {epochs} epochs with the same two decays, long "
            f"enough for ResNet-20's training loss to flatten (first verdict), on small "
            f"MNIST images: the ordering, not the paper's error rates, is what carries "
            f"over. `python -m minires demo degradation --full --dataset cifar10` runs the "
            f"paper's own recipe.")
    return text
