"""Lesion study: delete one block of a trained net; a ResNet barely notices, a plain net breaks.

Veit, Wilber & Belongie (2016), "Residual Networks Behave Like Ensembles of Relatively
Shallow Networks": a residual block computes x + F(x), so deleting it (replacing it by the
identity) leaves the shortcut path, and every other block still receives an input of the
kind it was trained on; unrolled, a ResNet of n blocks is a collection of 2^n paths of
different lengths, and a deletion removes only half of them.  Their Figure 3: deleting any
single block of a trained 110-layer ResNet barely changes its CIFAR-10 error, while deleting
any single layer of a plain VGG sends its error to chance.  In a plain net there is one
path: removing a block feeds the next block the output of an earlier one, which it has never
seen.  (Seed article 001, summary: "有论文表示,ResNet的效果类似于对不同层数网络进行集成方法".)

What is measured.  The ResNet-56 and plain-56 trained by the degradation demonstration
(seed ``config.seed``, same recipe, loaded from the shared cache, trained here if absent),
and their 20-layer twins.  For every block that keeps the shape (stride 1, same channels)
we build the net without that block (:meth:`~minires.models.CifarResNet.without_block`:
the block replaced by the identity, nothing retrained, BatchNorm statistics as trained) and
measure its test error in eval mode.  The two downsampling blocks (``layer2.0``,
``layer3.0``: stride 2, channels doubled) are excluded: replacing them by the identity
would change the tensor's shape, which the next block cannot take.

How "breaks" is measured.  Chance is 90% error (10 balanced classes).  A deletion that
raises the error from e0 to e moves the net the fraction (e - e0) / (90% - e0) of the way
to chance: 0 is harmless, 1 is chance.  This matters because plain-56 is itself the
degraded net: after a short training its intact error can already be far from zero, and a
fixed number of points could not measure its fall.  plain-20, which trains well, is the
plain net with the most room to fall; ResNet-20 shows the ensemble effect's dependence on
depth (with 3 blocks per stage there are far fewer paths than with 9).
"""

from __future__ import annotations

import sys

import numpy as np

from minires import data
from minires.experiments.common import (
    DemoConfig,
    DemoResult,
    Verdict,
    demonstrate,
    fmt,
    progress,
    pyplot,
    save_figure,
)
from minires.experiments.training import (
    RunSpec,
    build_model,
    default_recipe,
    load_split,
    train_spec,
)
from minires.train import evaluate

NAME = "lesion"
TITLE = "Lesion study: deleting one block barely hurts a ResNet, and breaks a plain net"

# The claim's thresholds.
RESNET_MEDIAN_MAX = 5.0  # ResNet-56: median increase (test-error points) below this
PLAIN_TOWARD_CHANCE = 0.5  # plain nets: median deletion moves them at least halfway to chance
CHANCE = 90.0  # % error of a guess among 10 balanced classes

CLAIM = (
    f"Deleting a single shape-preserving block from a trained ResNet-56 barely changes its "
    f"test error (median increase over the blocks below {RESNET_MEDIAN_MAX:g} points), "
    f"while deleting one from a trained plain net breaks it (the median deletion takes the "
    f"error at least halfway from its intact value to the {CHANCE:g}% of chance, for "
    f"plain-56 and for plain-20): a ResNet behaves like an ensemble of many paths, a plain "
    f"net is a single chain.")
SOURCE = (
    "Veit, Wilber & Belongie 2016, 'Residual Networks Behave Like Ensembles of Relatively "
    "Shallow Networks', section 4 and Figure 3 (deleting individual blocks of a ResNet-110 "
    "vs layers of VGG-15 on CIFAR-10); He et al. 2016, section 3.1 (y = F(x) + x); seed "
    "article 001, summary (ResNets resemble an ensemble of networks of different depths).")

NETS = ("resnet56", "plain56", "resnet20", "plain20")
LABELS = {"resnet56": "ResNet-56", "plain56": "plain-56", "resnet20": "ResNet-20",
          "plain20": "plain-20"}
COLOURS = {"resnet56": "C3", "plain56": "C0", "resnet20": "C1", "plain20": "C2"}


def eval_size(config: DemoConfig, recipe) -> int | None:
    """Test images per evaluation: a class-balanced prefix of the recipe's test set (every
    lesion costs one pass)."""
    size = config.pick(tiny=200, quick=500, full=None)
    if recipe.test_size is not None:
        size = recipe.test_size if size is None else min(size, recipe.test_size)
    return size


def lesion_errors(config: DemoConfig, model, loader, label: str) -> dict:
    """Test error of ``model`` and of ``model`` without each deletable block, in turn.

    Returns {"baseline": error, "blocks": [names in forward order], "deletable": [bool],
    "errors": [error or None for blocks that change the shape]} (errors in [0, 1]).
    """
    baseline = evaluate(model, loader, device=config.device)[1]
    names, deletable, errors = [], [], []
    blocks = model.blocks()
    for name, unit in progress(blocks, f"lesion: {label}", config.progress):
        names.append(name)
        keeps = bool(unit.keeps_shape)
        deletable.append(keeps)
        errors.append(evaluate(model.without_block(name), loader, device=config.device)[1]
                      if keeps else None)
    return {"baseline": float(baseline), "blocks": names, "deletable": deletable,
            "errors": errors}


def _increases(entry: dict) -> np.ndarray:
    """Test-error increases in points (0-100) over the deletable blocks."""
    kept = [e for e in entry["errors"] if e is not None]
    return 100 * (np.asarray(kept) - entry["baseline"])


def toward_chance(entry: dict) -> np.ndarray:
    """Per deletable block, the fraction of the way from the intact error to chance that
    the deletion moved the net: (e - e0) / (chance - e0); NaN when the intact net is within
    one point of chance (no room left to measure a fall)."""
    room = CHANCE - 100 * entry["baseline"]
    if room < 1.0:
        return np.full(len(_increases(entry)), np.nan)
    return _increases(entry) / room


def summary(entry: dict) -> dict:
    inc, frac = _increases(entry), toward_chance(entry)
    return {"intact": 100 * entry["baseline"], "median_increase": float(np.median(inc)),
            "mean_increase": float(inc.mean()), "min_increase": float(inc.min()),
            "max_increase": float(inc.max()), "median_toward_chance": float(np.median(frac)),
            "median_error": 100 * entry["baseline"] + float(np.median(inc))}


def excluded_blocks(entry: dict) -> list:
    """The blocks that change the shape (not deletable), in forward order."""
    return [n for n, k in zip(entry["blocks"], entry["deletable"], strict=True) if not k]


# ---------------------------------------------------------------------------- setup


def setup(config: DemoConfig) -> str:
    """What is built and measured, fixed before anything is measured."""
    recipe = default_recipe(config)
    n_test = len(load_split(config, "test", eval_size(config, recipe))[1])
    # which blocks keep the shape is architecture, known before any training
    deep, shallow = (build_model(config, name, recipe).blocks()
                     for name in ("resnet56", "resnet20"))
    keeps = [sum(bool(unit.keeps_shape) for _, unit in blocks) for blocks in (deep, shallow)]
    excluded = [name for name, unit in deep if not unit.keeps_shape]
    return (
        f"ResNet-56, plain-56, ResNet-20 and plain-20 (widths "
        f"{'/'.join(map(str, recipe.widths))}) as trained by the degradation "
        f"demonstration's recipe ({recipe.epochs} epochs on {config.dataset.upper()}, seed "
        f"{config.seed}; loaded from the shared cache, trained here if absent). Each block "
        f"that keeps the shape ({keeps[0]} of {len(deep)} in a 56-layer net, {keeps[1]} of "
        f"{len(shallow)} in a 20-layer one) is "
        f"deleted in turn (replaced by the identity; no retraining, BatchNorm statistics as "
        f"trained) and the test error is measured in eval mode on the first {n_test} test "
        f"images (class-balanced). Excluded: {', '.join(excluded)}, the downsampling blocks "
        f"(stride 2, channels doubled), which cannot be replaced by the identity (the shape "
        f"changes). 'Toward chance' = (e - e0) / ({CHANCE:g}% - e0) for intact error e0 and "
        f"error e after the deletion: 0 harmless, 1 chance.")


# ---------------------------------------------------------------------------- measurement


def planned_runs(config: DemoConfig) -> list:
    """The four nets of seed ``config.seed`` (shared with the degradation demonstration)."""
    return [RunSpec.of(net, config.seed, label=f"{LABELS[net]} (lesion)") for net in NETS]


def measure(config: DemoConfig) -> dict:
    """Train (or load) the four nets; the test error of each intact and without each
    deletable block in turn."""
    recipe = default_recipe(config)
    x_test, y_test = load_split(config, "test", eval_size(config, recipe))
    loader = data.DataLoader((x_test, y_test), 500)
    results, trained_here = {}, {}
    for net, spec in zip(NETS, planned_runs(config), strict=True):
        trained = train_spec(config, spec)
        trained_here[net] = trained.seconds > 0
        results[net] = lesion_errors(config, trained.model, loader, LABELS[net])
        results[net]["parameters"] = int(trained.model.num_parameters())
    return {"results": results, "trained_here": trained_here, "test_images": len(y_test)}


# ---------------------------------------------------------------------------- verdicts


def verdicts(numbers: dict) -> list:
    """One verdict per claim: ResNet-56's median increase, each plain net's median
    fraction of the way to chance."""
    results = numbers["results"]
    stats = {net: summary(entry) for net, entry in results.items()}
    res = stats["resnet56"]
    found = [Verdict(
        f"Deleting one block barely hurts the ResNet-56 (median test-error increase over "
        f"the {sum(results['resnet56']['deletable'])} deletable blocks < "
        f"{RESNET_MEDIAN_MAX:g} points)",
        res["median_increase"] < RESNET_MEDIAN_MAX,
        f"median {res['median_increase']:+.2f} points (toward chance "
        f"{res['median_toward_chance']:.2f}), mean {res['mean_increase']:+.2f}, worst "
        f"{res['max_increase']:+.2f} (block {_worst(results['resnet56'])}); intact "
        f"{res['intact']:.2f}%")]
    for net in ("plain56", "plain20"):
        st = stats[net]
        found.append(Verdict(
            f"Deleting one block breaks the {LABELS[net]} (median deletion at least "
            f"{PLAIN_TOWARD_CHANCE:g} of the way from its intact error to chance)",
            bool(st["median_toward_chance"] >= PLAIN_TOWARD_CHANCE),
            f"intact {st['intact']:.2f}%, median after a deletion {st['median_error']:.2f}% "
            f"({st['median_increase']:+.2f} points, toward chance "
            f"{st['median_toward_chance']:.2f}; least {st['min_increase']:+.2f} points); "
            f"ResNet-56's median toward chance {res['median_toward_chance']:.2f}"))
    return found


# ---------------------------------------------------------------------------- report


def report(result: DemoResult, numbers: dict) -> None:
    """The tables, the notes and the summary numbers, from the numbers."""
    results, n_test = numbers["results"], numbers["test_images"]
    first = results["resnet56"]
    excluded = excluded_blocks(first)
    stats = {net: summary(entry) for net, entry in results.items()}
    result.table(
        "Test error (%) after deleting one block: increases in points over the deletable "
        "blocks",
        ["net", "deletable blocks", "intact error", "median increase", "mean increase",
         "min increase", "max increase", "median error after deletion",
         "median toward chance"],
        [[LABELS[n], sum(results[n]["deletable"])]
         + [f"{stats[n][k]:.1f}" if k in ("intact", "median_error") else f"{stats[n][k]:+.1f}"
            for k in ("intact", "median_increase", "mean_increase", "min_increase",
                      "max_increase", "median_error")]
         + [f"{stats[n]['median_toward_chance']:.2f}"] for n in NETS])
    result.table("Per block of the 56-layer nets: test error (%) with that block deleted",
                 ["block", "ResNet-56", "plain-56"],
                 [[name] + ["not deletable (downsampling)" if results[n]["errors"][i] is None
                            else f"{100 * results[n]['errors'][i]:.1f}"
                            for n in ("resnet56", "plain56")]
                  for i, name in enumerate(first["blocks"])])
    result.numbers.update({
        "summary": stats, "excluded_blocks": excluded,
        "thresholds": {"resnet_median_max_points": RESNET_MEDIAN_MAX,
                       "plain_toward_chance": PLAIN_TOWARD_CHANCE, "chance": CHANCE},
        "increase_points": {n: _increases(results[n]).tolist() for n in NETS},
        "toward_chance": {n: toward_chance(results[n]).tolist() for n in NETS},
    })
    res, pla, p20, r20 = (stats[n] for n in ("resnet56", "plain56", "plain20", "resnet20"))
    origin = ", ".join(f"{LABELS[n]} {'trained here' if t else 'from the cache'}"
                       for n, t in numbers.get("trained_here", {}).items())
    result.notes = (
        f"Reading the numbers. Deleting a block leaves the ResNet's shortcut in place: "
        f"x + F(x) becomes x, and the net loses only the paths through that block; "
        f"ResNet-56's error moves by a median {res['median_increase']:+.2f} points "
        f"({res['median_toward_chance']:.2f} of the way to chance). A plain net has no other "
        f"path: the block after the deleted one receives features it was never trained on. "
        f"plain-20 goes from {p20['intact']:.1f}% to a median {p20['median_error']:.1f}% "
        f"({p20['median_toward_chance']:.2f} of the way to chance), plain-56 from "
        f"{pla['intact']:.1f}% to {pla['median_error']:.1f}% "
        f"({pla['median_toward_chance']:.2f}); plain-56 starts high because it is the "
        f"degraded net of the degradation demonstration. ResNet-20 has 3 blocks per stage "
        f"instead of 9, so far fewer paths, and the ensemble view predicts that it suffers "
        f"more from a deletion: it is hurt "
        f"{'more' if r20['median_toward_chance'] > res['median_toward_chance'] else 'less'} "
        f"than ResNet-56 (median {r20['median_increase']:+.2f} points, "
        f"{r20['median_toward_chance']:.2f} toward chance). The downsampling blocks "
        f"({', '.join(excluded)}) are left out: replacing them by the identity would change "
        f"the tensor's shape. {fmt(n_test)} test images: one image is "
        f"{100 / n_test:.2g} points." + (f" Nets: {origin}." if origin else ""))


def run(config: DemoConfig) -> DemoResult:
    """setup -> measure -> verdicts, then the report and the figure
    (:func:`minires.experiments.common.demonstrate`)."""
    return demonstrate(sys.modules[__name__], config)


# ---------------------------------------------------------------------------- figure


def plots(config: DemoConfig, numbers: dict) -> list:
    """Test error vs deleted block: 56-layer nets (left), 20-layer nets (right)."""
    results = numbers["results"]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2),
                             gridspec_kw={"width_ratios": [2.6, 1]}, sharey=True)
    for ax, nets in zip(axes, (("resnet56", "plain56"), ("resnet20", "plain20")),
                        strict=True):
        first = results[nets[0]]
        index = np.arange(1, len(first["blocks"]) + 1)
        for net in nets:
            entry = results[net]
            errors = np.array([np.nan if e is None else 100 * e for e in entry["errors"]])
            ax.plot(index, errors, color=COLOURS[net], marker="o", ms=4, lw=1.2,
                    label=f"{LABELS[net]}, one block deleted")
            ax.axhline(100 * entry["baseline"], color=COLOURS[net], ls="--", lw=1.2,
                       label=f"{LABELS[net]}, intact: {100 * entry['baseline']:.1f}%")
        for i, keeps in enumerate(first["deletable"]):
            if not keeps:
                ax.axvspan(i + 0.5, i + 1.5, color="0.85", lw=0)
                ax.text(i + 1, 45, "downsampling:\nnot deletable", fontsize=6.5,
                        ha="center", va="center", rotation=90, color="0.35")
        ax.axhline(CHANCE, color="grey", ls=":", lw=1, label=f"chance ({CHANCE:g}%)")
        ax.set_xticks(index)
        ax.set_xticklabels([n.replace("layer", "") for n in first["blocks"]], fontsize=6.5,
                           rotation=90)
        ax.set(xlabel="deleted block (stage.index, forward order)", ylim=(0, 100),
               xlim=(0.5, len(index) + 0.5),
               title=f"{LABELS[nets[0]]} vs {LABELS[nets[1]]}")
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.1), ncol=2)
    axes[0].set_ylabel("test error, eval mode (%)")
    fig.suptitle("Test error after deleting one block (no retraining)", fontsize=10, y=1.0)
    fig.tight_layout()
    return [save_figure(fig, config, f"{NAME}_errors.png")]


def _worst(entry: dict) -> str:
    errors = [-1.0 if e is None else e for e in entry["errors"]]
    return entry["blocks"][int(np.argmax(errors))]
