"""The identity demonstration's report: tables, verdicts, notes and figures, all computed
from what :func:`minires.experiments.identity.measure` returned."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from minires.experiments.common import pyplot, save_figure
from minires.experiments.identity import (
    FAILED,
    LOW_LOSS,
    NAME,
    SCALE,
    VANISHED,
    VAR_ABS_NORMAL,
    WORSE_MARGIN,
)
from minires.experiments.training import final, training_curve


def report(result, config, sizes, recipe, exact, learned, signals, responses, scaled):
    """Tables, numbers and verdicts, all computed from the measurements."""
    L = sizes.depths[-1]
    result.setup = (
        f"(a) {sizes.exact_depth} BasicBlocks (conv3x3-BN-ReLU-conv3x3-BN, + x, ReLU) of "
        f"{sizes.width} channels on {sizes.size}x{sizes.size} maps, a batch of "
        f"{sizes.batch} inputs x = |N(0,1)|, float32, train mode (batch statistics) and "
        f"eval mode. (b) Plain and residual stacks of {', '.join(map(str, sizes.depths))} "
        f"such blocks, standard initialisation (He-normal convolutions, BN gamma 1, beta "
        f"0), trained with Adam (lr {sizes.lr:g}) for {sizes.steps} steps, a fresh batch of "
        f"{sizes.batch} every step, MSE to the input; final loss = mean of the last 10 "
        f"steps; Var(x) = 1 - 2/pi = {VAR_ABS_NORMAL:.3f} is the loss of outputting the "
        f"mean. (c) The {L}-block stacks at initialisation, train mode: RMS of each block's "
        f"output and ||dL/dx_l|| for L = sum(x_L r) / batch, r ~ N(0,1) fixed. "
        f"(d) plain/ResNet-{'/'.join(map(str, sizes.fig7_depths))} trained on "
        f"{config.dataset} with the shared default recipe ({recipe.epochs} epochs, widths "
        f"{'/'.join(map(str, recipe.widths))}, seed {config.seed}); std of each 3x3 layer's "
        f"BN output over {sizes.response_images} test images (eval mode). (e) ResNet-20 with "
        f"every shortcut scaled by {SCALE} vs the identity-shortcut ResNet-20, same recipe "
        f"and seed; training loss and error from an eval-mode pass over the training set "
        f"after the last epoch.")
    result.numbers["sizes"] = asdict(sizes)
    result.numbers["recipe"] = dict(recipe.__dict__)
    result.numbers["thresholds"] = {"low_loss_fraction": LOW_LOSS, "vanished": VANISHED,
                                    "worse_margin": WORSE_MARGIN,
                                    "var_abs_normal": VAR_ABS_NORMAL}
    _report_exact(result, sizes, exact)
    _report_learning(result, sizes, learned)
    _report_signals(result, sizes, signals)
    _report_responses(result, sizes, responses)
    _report_scaling(result, scaled)
    result.notes = notes(sizes, learned, signals, result.numbers["responses"])


def notes(sizes, learned, signals, responses) -> str:
    """Plain-language reading of the measured numbers (every number is computed)."""
    res = learned["residual"]
    fails = [d for d in sizes.depths if res[d]["final_fraction"] >= LOW_LOSS]
    deep = sizes.depths[-1]
    text = "Reading the numbers. (b) "
    if fails:
        learnt = [d for d in sizes.depths if d not in fails]
        text += (
            (f"Residual stacks of {', '.join(map(str, learnt))} blocks learn the identity "
             f"within the budget, those of {', '.join(map(str, fails))} blocks do not "
             if learnt else "No residual stack learns the identity within the budget ")
            + f"(fraction {res[fails[0]]['final_fraction']:.2f} at {fails[0]}, "
            f"{res[deep]['final_fraction']:.2f} at {deep}, where the plain stack has "
            f"{learned['plain'][deep]['final_fraction']:.2f}"
            + (": both output about the mean). " if min(
                res[deep]["final_fraction"], learned["plain"][deep]["final_fraction"]) > 0.9
               else "). ")
            + f"Initialised the standard way, every residual branch adds a unit-variance BN "
            f"output, so a deep residual stack starts far from the identity (initial loss "
            f"{res[deep]['initial_loss']:.3g} at {deep} blocks against "
            f"{learned['plain'][deep]['initial_loss']:.3g} for the plain one) and the "
            f"optimiser must first silence {deep} random branches. What the residual form "
            f"makes trivial is representing and keeping the identity (part a: F = 0 gives it "
            f"exactly, at any depth); finding it from a random start is easy only for "
            f"shallow stacks here. The seed articles claim the first (the residual can be set "
            f"to zero), not that any optimiser silences {deep} random branches in "
            f"{sizes.steps} steps; zero-initialising each branch's last BN (gamma = 0, "
            f"BasicBlock(zero_init_residual=True)) starts every depth at the identity. ")
    else:
        text += "Residual stacks learn the identity at every depth within the budget. "
    s_res, s_plain = signals["residual"], signals["plain"]
    explodes = s_plain["backward_input_over_output"] > 1 / VANISHED
    text += (
        f"(c) With BatchNorm in train mode the plain stack's forward signal does not vanish "
        f"(BN holds its RMS near {s_plain['forward_rms'][-1]:.2f}); its gradient changes by a "
        f"factor {s_plain['backward_factor']:.2f} per block toward the input "
        f"({s_plain['backward_input_over_output']:.2g} over {deep} blocks)"
        + (": it explodes rather than vanishes, consistent with the paper's remark that BN "
           "keeps plain nets' signals alive, so their degradation is not a "
           "vanishing-gradient problem. " if explodes else ". ")
        + f"The residual stack's gradient changes by "
        f"{s_res['backward_input_over_output']:.3g} in all, its forward RMS by "
        f"{s_res['forward_rms'][-1] / s_res['forward_rms'][0]:.3g} (each block adds its "
        f"branch to the stream). ")
    small, big = sizes.fig7_depths
    r_small, r_big = responses[f"resnet{small}"], responses[f"resnet{big}"]
    text += (
        f"(d) The mean response std of ResNet-{big} differs from ResNet-{small}'s by "
        f"{100 * (r_big['mean_std'] / r_small['mean_std'] - 1):+.1f}%, ResNet-{big}'s from "
        f"plain-{big}'s by "
        f"{100 * (r_big['mean_std'] / responses[f'plain{big}']['mean_std'] - 1):+.1f}%"
        + ("; a difference of a few percent between two single-seed nets is weak evidence."
           if abs(r_big["mean_std"] / r_small["mean_std"] - 1) < 0.05 else "."))
    return text


def _report_exact(result, sizes, exact):
    result.table(f"(a) {sizes.exact_depth} blocks applied to x: max |out - in| and "
                 f"||out - in|| / ||in||",
                 ["stack", "input", "mode", "max |out - in|", "relative"],
                 [[e["stack"], e["input"], e["mode"], e["max_abs_diff"], e["rel_diff"]]
                  for e in exact.values()])
    result.numbers["exact"] = exact
    zero = [e for e in exact.values()
            if e["stack"] == "residual, gamma = 0" and e["input"] == "non-negative"]
    plain = [e for e in exact.values() if e["stack"].startswith("plain")]
    result.check(
        f"{sizes.exact_depth} residual blocks with gamma = 0 compute exactly the identity on "
        f"non-negative input (max |out - in| = 0 in float32, train and eval mode)",
        all(e["max_abs_diff"] == 0.0 for e in zero),
        ", ".join(f"{e['mode']}: {e['max_abs_diff']:g}" for e in zero))
    result.check(
        "The plain stack is not the identity, with gamma = 0 or as initialised "
        "(relative difference above 0.5)",
        all(e["rel_diff"] > 0.5 for e in plain),
        ", ".join(f"{e['stack']} ({e['mode']}): {e['rel_diff']:.3g}" for e in plain))


def _report_learning(result, sizes, learned):
    rows = []
    for depth in sizes.depths:
        p, r = learned["plain"][depth], learned["residual"][depth]
        rows.append([depth, p["initial_loss"], p["final_loss"], p["final_fraction"],
                     r["initial_loss"], r["final_loss"], r["final_fraction"]])
    result.table(f"(b) Learning the identity: MSE after {sizes.steps} Adam steps "
                 f"(fraction = loss / Var(x); 1 = outputs the mean)",
                 ["blocks", "plain: initial", "plain: final", "plain: fraction",
                  "residual: initial", "residual: final", "residual: fraction"], rows)
    result.numbers["learning"] = {kind: {str(d): v for d, v in by_depth.items()}
                                  for kind, by_depth in learned.items()}
    res = [learned["residual"][d]["final_fraction"] for d in sizes.depths]
    plain = [learned["plain"][d]["final_fraction"] for d in sizes.depths]
    shallow, deep = sizes.depths[0], sizes.depths[-1]
    result.check(
        f"Plain stacks get worse with depth (final loss at {deep} blocks above that at "
        f"{shallow}, and above {FAILED:g} Var(x))",
        plain[-1] > plain[0] and plain[-1] > FAILED,
        "plain fractions " + ", ".join(f"{d}: {v:.3g}" for d, v in
                                       zip(sizes.depths, plain, strict=True)))
    reached = [d for d, r, p in zip(sizes.depths, res, plain, strict=True)
               if p > FAILED and r < LOW_LOSS]
    result.check(
        f"Where a plain stack cannot learn the identity (final loss above {FAILED:g} "
        f"Var(x)), a residual stack of the same depth learns it (below {LOW_LOSS:g} Var(x))",
        bool(reached),
        (f"at {', '.join(map(str, reached))} block(s): " if reached else "at no depth: ")
        + ", ".join(f"{d}: residual {r:.3g} vs plain {p:.3g}" for d, r, p in
                    zip(sizes.depths, res, plain, strict=True)))


def _report_signals(result, sizes, signals):
    L = sizes.depths[-1]
    rows = []
    for kind, s in signals.items():
        f, b = s["forward_rms"], s["backward_norm"]
        rows.append([kind, f[0], f[L // 2], f[-1], s["forward_spread"], b[0], b[L // 2], b[-1],
                     s["backward_spread"], s["backward_factor"]])
    result.table(f"(c) {L}-block stacks at initialisation (train mode): forward RMS of x_l "
                 f"and backward ||dL/dx_l||; rho = fitted per-block factor of the gradient "
                 f"toward the input",
                 ["stack", "RMS x_0", f"RMS x_{L // 2}", f"RMS x_{L}", "forward max/min",
                  "||g_0||", f"||g_{L // 2}||", f"||g_{L}||", "backward max/min", "rho"], rows)
    result.numbers["signals"] = signals
    res, plain = signals["residual"], signals["plain"]
    result.check(
        f"Through {L} residual blocks neither the forward signal nor the backward gradient "
        f"vanishes (never below 1/{1 / VANISHED:g} of its value where it enters)",
        res["forward_min_ratio"] >= VANISHED and res["backward_min_ratio"] >= VANISHED,
        f"forward: min/input {res['forward_min_ratio']:.3g}; backward: min/output "
        f"{res['backward_min_ratio']:.3g}; input/output gradient "
        f"{res['backward_input_over_output']:.3g}")
    result.check(
        "The residual stack keeps the gradient norm within a narrower range across depth "
        "than the plain stack (max/min over the blocks)",
        res["backward_spread"] < plain["backward_spread"],
        f"residual {res['backward_spread']:.3g} (rho {res['backward_factor']:.3f} per "
        f"block), plain {plain['backward_spread']:.3g} (rho {plain['backward_factor']:.3f})")


def _report_responses(result, sizes, responses):
    stats = {name: {"stds": s, "mean_std": float(np.mean(s)), "median_std":
                    float(np.median(s)), "layers": len(s)} for name, s in responses.items()}
    result.numbers["responses"] = stats
    small, big = sizes.fig7_depths
    rows = [[name, s["layers"], s["mean_std"], s["median_std"], min(s["stds"]),
             max(s["stds"])] for name, s in stats.items()]
    result.table("(d) Std of the 3x3 layers' responses (BN outputs) in the trained nets",
                 ["net", "3x3 layers", "mean std", "median std", "min", "max"], rows)
    pairs = []
    for depth in sizes.fig7_depths:
        plain, res = stats[f"plain{depth}"], stats[f"resnet{depth}"]
        below = float(np.mean(np.asarray(res["stds"]) < np.asarray(plain["stds"])))
        stats[f"resnet{depth}"]["fraction_below_plain"] = below
        pairs.append((depth, res["mean_std"], plain["mean_std"], below))
    result.check(
        "ResNet responses are generally smaller than the plain nets' (mean std over the "
        "layers, at both depths)",
        all(r < p for _, r, p, _ in pairs),
        "; ".join(f"depth {d}: ResNet {r:.3f} vs plain {p:.3f} (ResNet smaller at "
                  f"{100 * b:.0f}% of the layers)" for d, r, p, b in pairs))
    result.check(
        f"The deeper ResNet has smaller responses (mean std of ResNet-{big} below "
        f"ResNet-{small})",
        stats[f"resnet{big}"]["mean_std"] < stats[f"resnet{small}"]["mean_std"],
        f"ResNet-{big} {stats[f'resnet{big}']['mean_std']:.3f}, ResNet-{small} "
        f"{stats[f'resnet{small}']['mean_std']:.3f} (plain-{big} "
        f"{stats[f'plain{big}']['mean_std']:.3f}, plain-{small} "
        f"{stats[f'plain{small}']['mean_std']:.3f})")


def _report_scaling(result, scaled):
    stats = {}
    for kind, run_ in scaled.items():
        h = run_.history
        stats[kind] = {"train_loss": final(h, "train_loss_eval", "train_loss"),
                       "train_error": final(h, "train_error_eval", "train_error"),
                       "test_error": float(h[-1]["test_error"]),
                       "train_loss_curve": h["train_loss"], "trained_now": run_.seconds > 0,
                       "cache_key": run_.key}
    result.numbers["scaling"] = stats
    result.table(f"(e) Identity vs shortcuts scaled by {SCALE} (ResNet-20, same recipe)",
                 ["shortcut", "train loss", "train error (%)", "test error (%)"],
                 [["identity (x 1)", stats["identity"]["train_loss"],
                   100 * stats["identity"]["train_error"], 100 * stats["identity"]["test_error"]],
                  [f"scaled (x {SCALE})", stats["scaled"]["train_loss"],
                   100 * stats["scaled"]["train_error"], 100 * stats["scaled"]["test_error"]]])
    ident, half = stats["identity"], stats["scaled"]
    ratio = half["train_loss"] / ident["train_loss"]
    result.check(
        f"Scaling the shortcut by {SCALE} trains worse than the identity (final training "
        f"loss higher by more than {100 * WORSE_MARGIN:.0f}%)",
        ratio > 1 + WORSE_MARGIN,
        f"training loss {half['train_loss']:.4f} vs {ident['train_loss']:.4f} (ratio "
        f"{ratio:.2f}); training error {100 * half['train_error']:.2f}% vs "
        f"{100 * ident['train_error']:.2f}%; test error {100 * half['test_error']:.2f}% vs "
        f"{100 * ident['test_error']:.2f}%")


# ---------------------------------------------------------------------------- figures


def plot_depth(config, sizes, learned, signals) -> str:
    """(b) final loss vs depth; (c) forward RMS and backward gradient norm vs block."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    colours = {"plain": "black", "residual": "C3"}
    ax = axes[0]
    for kind, by_depth in learned.items():
        ax.plot(sizes.depths, [by_depth[d]["final_fraction"] for d in sizes.depths],
                marker="o", color=colours[kind], label=kind)
    ax.axhline(1.0, color="grey", ls=":", lw=1, label="outputs the mean")
    ax.axhline(LOW_LOSS, color="C2", ls="--", lw=1, label=f"{LOW_LOSS:g} Var(x)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="blocks", ylabel="final MSE / Var(x)",
           title=f"(b) learning the identity ({sizes.steps} Adam steps)")
    ax.legend(fontsize=7)
    for ax, key, title, ylabel in (
            (axes[1], "forward_rms", "(c) forward signal at init", "RMS of x_l"),
            (axes[2], "backward_norm", "(c) backward gradient at init", "||dL/dx_l||")):
        for kind, s in signals.items():
            values = s[key]
            ax.plot(np.arange(len(values)), values, color=colours[kind], label=kind)
        ax.set_yscale("log")
        ax.set(xlabel="block l (0 = input)", ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
    for ax in axes:
        ax.title.set_fontsize(10)
    fig.tight_layout()
    return save_figure(fig, config, f"{NAME}_depth.png")


def plot_responses(config, responses) -> str:
    """Paper Figure 7: std of layer responses, in layer order and sorted."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6))
    styles = {"plain": "--", "resnet": "-"}
    for i, (name, stds) in enumerate(responses.items()):
        kind = "plain" if name.startswith("plain") else "resnet"
        depth = name[len(kind):]
        text = f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}"
        colour = f"C{i // 2}"
        ax1.plot(np.arange(1, len(stds) + 1), stds, ls=styles[kind], color=colour, lw=1.3,
                 label=text)
        ax2.plot(np.arange(1, len(stds) + 1), sorted(stds, reverse=True), ls=styles[kind],
                 color=colour, lw=1.3, label=text)
    ax1.set(xlabel="3x3 layer index (original order)", ylabel="std of response",
            title="Std of layer responses (BN output) of the trained nets (paper Fig. 7)")
    ax2.set(xlabel="3x3 layer index (sorted by magnitude)", ylabel="std of response")
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return save_figure(fig, config, f"{NAME}_responses.png")


def plot_scaling(config, scaled) -> str:
    """(e) training loss per epoch: identity vs scaled shortcuts."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for colour, (kind, run_) in zip(("C3", "C0"), scaled.items(), strict=True):
        x, y, xlabel = training_curve(run_)
        text = "identity shortcut" if kind == "identity" else f"shortcut x {SCALE}"
        ax.plot(x, y, color=colour, lw=1.5, label=text)
    ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel="training loss (train mode, as trained)",
           title="ResNet-20: identity vs constant scaling")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, config, f"{NAME}_scaling.png")
