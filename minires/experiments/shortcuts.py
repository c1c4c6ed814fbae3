"""Shortcut options A, B and C: identity or projection shortcuts (paper section 4.1, Table 3).

Where a ResNet changes the shape of its feature maps (stride 2 and twice the channels, at
the first block of stages 2 and 3), the input x of a block cannot be added to F(x) as it
is.  The paper (section 3.3) compares three ways to build the shortcut:

* **A**: the identity everywhere; where the shape changes, subsample x[:, :, ::2, ::2]
  and pad the new channels with zeros.  No parameters at all (the CIFAR nets of 4.2).
* **B**: a projection W_s x (1x1 convolution + BN) only where the shape changes, the
  identity elsewhere.
* **C**: a projection on every block.

On ImageNet (ResNet-34, Table 3) the top-1 errors are A 25.03%, B 24.52%, C 24.19%: "all
three options are considerably better than the plain counterpart", B is "slightly better"
than A (the zero-padded channels have no residual learning) and C "marginally better" than
B (the extra parameters), and "the small differences among A/B/C indicate that projection
shortcuts are not essential for addressing the degradation problem".

What is measured: three ResNet-20s, identical except for the shortcut option, trained with
the same recipe and seed (option A is the default ResNet-20, the very net the other
demonstrations use, loaded from the shared cache when it was trained before).  For each:
parameters, final training error and loss (an eval-mode pass over the whole training set
after the last epoch), final test error, and seconds per epoch.

"Close to each other" is made precise as: the spread (largest minus smallest) of the three
error rates is at most ``2 * SE_diff`` (the rule of common.at_most, applied to the worst
against the best), where ``SE_diff = sqrt(2 p (1 - p) / n)`` is the standard error of the
difference of two error rates near their mean p measured on n images (one seed: no
seed-to-seed spread to use): the differences are then no larger than what measuring on a
finite set alone produces.
"""

from __future__ import annotations

import sys

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
from minires.models import count_parameters, summary

NAME = "shortcuts"
TITLE = "Shortcut options A, B, C: the identity is enough (paper Table 3)"

CLAIM = (
    "Parameter-free identity shortcuts (option A, zero-padding where the shape changes) "
    "train as well as projection shortcuts: ResNet-20s with options A, B (projections where "
    "the shape changes) and C (projections on every block) reach training and test errors "
    "within a stated tolerance of each other, and the extra parameters of C buy no "
    "improvement beyond that tolerance.")
SOURCE = (
    "He et al. 2016, section 3.3 (the three options) and section 4.1, 'Identity vs. "
    "Projection Shortcuts', Table 3 (ResNet-34 on ImageNet, top-1 error: A 25.03%, "
    "B 24.52%, C 24.19%; 'projection shortcuts are not essential for addressing the "
    "degradation problem').")

OPTIONS = ("A", "B", "C")
DESCRIPTIONS = {"A": "identity, zero-pad where the shape changes (no parameters)",
                "B": "1x1 projection + BN where the shape changes, identity elsewhere",
                "C": "1x1 projection + BN on every block"}
PAPER_TOP1 = {"A": 25.03, "B": 24.52, "C": 24.19}  # Table 3, ResNet-34, 10-crop top-1 (%)


def close(errors: dict, n: int):
    """The verdict "within noise of each other" for options' error rates on ``n`` images:
    the worst minus the best is <= 2 standard errors (common.at_most both ways round; one
    seed, so the binomial SE of a difference of two error rates)."""
    worst = max(errors, key=errors.get)
    best = min(errors, key=errors.get)
    a, b = errors[worst], errors[best]
    return at_most(worst, best, [a], [b], measurement_se=error_rate_se(a, b, n))


def option_spec(config: DemoConfig, option: str, recipe) -> RunSpec:
    """Option A is the default ResNet-20 (no keyword, so the cache entry is shared with the
    other demonstrations); B and C pass ``shortcut``."""
    if option == "A":
        return RunSpec.of("resnet20", config.seed, recipe, label="ResNet-20 (option A)")
    return RunSpec.of("resnet20", config.seed, recipe, label=f"ResNet-20 (option {option})",
                      shortcut=option)


def planned_runs(config: DemoConfig) -> list:
    """The three ResNet-20s (trained by ``demo`` in parallel beforehand)."""
    return [option_spec(config, option, recipe_for(config)) for option in OPTIONS]


def image_counts(config: DemoConfig, recipe) -> tuple:
    """(training images, test images) of the recipe on ``config.dataset``."""
    return (len(load_split(config, "train", recipe.train_size)[1]),
            len(load_split(config, "test", recipe.test_size)[1]))


# ---------------------------------------------------------------------------- setup


def setup(config: DemoConfig) -> str:
    """What is built and how it is compared, fixed before anything is measured."""
    recipe = recipe_for(config)
    n_train, n_test = image_counts(config, recipe)
    return (
        f"ResNet-20 ({config.dataset}, widths {'/'.join(map(str, recipe.widths))}) with "
        f"shortcut options A, B and C, the same seed ({config.seed}) and recipe: "
        f"{recipe.epochs} epochs of SGD (batch {recipe.batch_size}, lr {recipe.lr} with "
        f"{recipe.warmup_epochs:g} warm-up epoch(s), /10 at 50% and 75%, momentum 0.9, "
        f"weight decay 1e-4) on {n_train} training images; test error on {n_test} test "
        f"images. Training error and loss: an eval-mode pass over the whole training set "
        f"after the last epoch. 'Close': worst minus best within twice the standard error "
        f"of a difference of two error rates, sqrt(2p(1-p)/n) (one seed).")


# ---------------------------------------------------------------------------- measurement


def measure(config: DemoConfig) -> dict:
    """Train (or load) ResNet-20 with shortcut options A, B, C; per option its parameters,
    MACs, final training/test error and loss, seconds per epoch and training curve."""
    recipe = recipe_for(config)
    runs = {option: train_spec(config, option_spec(config, option, recipe))
            for option in OPTIONS}
    x_train = load_split(config, "train", recipe.train_size)[0]
    n_train, n_test = image_counts(config, recipe)
    stats = {}
    for option, run_ in runs.items():
        history = run_.history
        stats[option] = run_numbers(run_, "train_error") | {
            "parameters": count_parameters(run_.model),
            "macs": summary(run_.model, x_train.shape[1:], print_fn=None).macs,
            "test_loss": float(history[-1]["test_loss"]),
            "seconds_per_epoch": float(np.mean(history["epoch_time"])),
            "test_error_per_epoch": history["test_error"],
        }
    return {"options": stats, "n_train": n_train, "n_test": n_test,
            "recipe": dict(recipe.__dict__)}


# ---------------------------------------------------------------------------- verdicts


def comparisons(numbers: dict) -> dict:
    """The three statistical comparisons the verdicts rest on (common.at_most, one seed:
    the binomial SE of a difference of two error rates)."""
    options, n_test = numbers["options"], numbers["n_test"]
    test = {o: options[o]["test_error"] for o in OPTIONS}
    train = {o: options[o]["train_error"] for o in OPTIONS}
    a, c = test["A"], test["C"]
    return {"test": close(test, n_test), "train": close(train, numbers["n_train"]),
            "a_vs_c": at_most("A", "C", [a], [c], measurement_se=error_rate_se(a, c, n_test))}


def _pct(options: dict, column: str) -> str:
    return ", ".join(f"{o} {100 * options[o][column]:.2f}%" for o in OPTIONS)


def verdicts(numbers: dict) -> list:
    """One verdict per claim, each on one rule of :mod:`minires.experiments.common`."""
    options, rule = numbers["options"], comparisons(numbers)
    extra_b, extra_c = _extra_parameters(options)
    a_params = options["A"]["parameters"]
    return [
        Verdict("Options A, B and C reach test errors within 2 standard errors of each other",
                rule["test"].holds, f"{_pct(options, 'test_error')}; worst - best: "
                f"{rule['test'].evidence(100, ' points')}"),
        Verdict("Options A, B and C reach training errors within 2 standard errors of each "
                "other",
                rule["train"].holds, f"{_pct(options, 'train_error')}; worst - best: "
                f"{rule['train'].evidence(100, ' points')}"),
        Verdict("The projections of option C buy little: A's test error <= C's (or within 2 "
                "standard errors)",
                rule["a_vs_c"].holds,
                f"C has {extra_c:,} more parameters than A (+{100 * extra_c / a_params:.1f}%), "
                f"B +{extra_b:,} (+{100 * extra_b / a_params:.1f}%); "
                f"{rule['a_vs_c'].evidence(100, ' points')}"),
    ]


def _extra_parameters(options: dict) -> tuple:
    a = options["A"]["parameters"]
    return options["B"]["parameters"] - a, options["C"]["parameters"] - a


# ---------------------------------------------------------------------------- report


def derived(numbers: dict) -> dict:
    """The summary numbers written beside the measurements (tolerances, spreads)."""
    rule = comparisons(numbers)
    test = {o: numbers["options"][o]["test_error"] for o in OPTIONS}
    extra_b, extra_c = _extra_parameters(numbers["options"])
    return {
        "tolerance_train": SE_MULTIPLE * rule["train"].se,
        "tolerance_test": SE_MULTIPLE * rule["test"].se,
        "spread_train_error": rule["train"].mean, "spread_test_error": rule["test"].mean,
        "test_gain_c_over_a": test["A"] - test["C"],
        "tolerance_c_over_a": SE_MULTIPLE * rule["a_vs_c"].se,
        "comparisons": {k: d.as_dict() for k, d in rule.items()},
        "extra_parameters_b": extra_b, "extra_parameters_c": extra_c,
        "paper_top1": PAPER_TOP1}


def report(result: DemoResult, numbers: dict) -> None:
    """The table, the notes and the summary numbers, from the numbers."""
    stats, n_test = numbers["options"], numbers["n_test"]
    summary_ = derived(numbers)
    result.numbers.update(summary_)
    a_params = stats["A"]["parameters"]
    rows = []
    for option in OPTIONS:
        s = stats[option]
        rows.append([option, DESCRIPTIONS[option], s["parameters"],
                     f"+{100 * (s['parameters'] / a_params - 1):.1f}%", s["macs"],
                     100 * s["train_error"], s["train_loss"], 100 * s["test_error"],
                     PAPER_TOP1[option]])
    result.table("ResNet-20 with the three shortcut options (errors in %; MACs = "
                 "multiply-adds per image)",
                 ["option", "shortcut", "parameters", "vs A", "MACs", "train error",
                  "train loss", "test error", "paper top-1 (ResNet-34, ImageNet)"], rows)
    order = sorted(OPTIONS, key=lambda o: stats[o]["test_error"])
    first, worst = order[0], order[-1]
    behind = 100 * (stats[worst]["test_error"] - stats[first]["test_error"])
    reading = ("the projections did not help here" if worst != "A"
               else "here the identity shortcut fell behind")
    beyond = summary_["spread_test_error"] > summary_["tolerance_test"]
    result.notes = (
        f"Ordering by test error here: {' < '.join(order)} (the paper's, on ImageNet: "
        f"C < B < A, by 0.33 and 0.51 points). With one seed and {n_test} test images, "
        f"differences within the tolerance are not evidence of an ordering either way"
        + (f"; option {worst} is {behind:.2f} points behind option {first}, beyond the "
           f"tolerance: with this short recipe {reading}" if beyond else "")
        + f". Option C also costs arithmetic: {fmt(stats['C']['macs'] / stats['A']['macs'])}x "
        f"A's multiply-adds per image (seconds per epoch are in the JSON, but they were "
        f"measured on a shared CPU and are noisy).")


def run(config: DemoConfig) -> DemoResult:
    """setup -> measure -> verdicts, then the report and the figure
    (:func:`minires.experiments.common.demonstrate`)."""
    return demonstrate(sys.modules[__name__], config)


# ---------------------------------------------------------------------------- figure


def plots(config: DemoConfig, numbers: dict) -> list:
    """Training error during training for A, B, C; final errors vs parameters."""
    stats = numbers["options"]
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6),
                                   gridspec_kw={"width_ratios": [1.5, 1]})
    for i, option in enumerate(OPTIONS):
        curve = stats[option]["curve"]
        ax1.plot(curve["x"], 100 * np.asarray(curve["train_error"]), color=f"C{i}", lw=1.4,
                 label=f"option {option}")
    ax1.set_yscale("log")
    ax1.set(xlabel=stats["A"]["curve"]["unit"], ylabel="training error (%, train mode)",
            title="ResNet-20: shortcut options A, B, C")
    ax1.legend(fontsize=7)
    for i, option in enumerate(OPTIONS):
        s = stats[option]
        ax2.scatter(s["parameters"] / 1e3, 100 * s["test_error"], color=f"C{i}", s=40,
                    marker="o", label=f"{option} test")
        ax2.scatter(s["parameters"] / 1e3, 100 * s["train_error"], color=f"C{i}", s=40,
                    marker="x", label=f"{option} train")
    ax2.set(xlabel="parameters (thousands)", ylabel="final error (%)",
            title="what the projections cost and buy")
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return [save_figure(fig, config, f"{NAME}_options.png")]
