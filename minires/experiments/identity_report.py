"""The identity demonstration's report: tables, notes and figures, all computed from the
numbers that :func:`minires.experiments.identity.measure` returned (the verdicts are
:func:`minires.experiments.identity.verdicts`)."""

from __future__ import annotations

import numpy as np

from minires.experiments.common import pyplot, save_figure
from minires.experiments.identity import LOW_LOSS, NAME, SCALE, VANISHED


def report(result, numbers: dict) -> None:
    """The tables (a)-(e) and the notes, from the numbers."""
    sizes = numbers["sizes"]
    _table_exact(result, sizes, numbers["exact"])
    _table_learning(result, sizes, numbers["learning"])
    _table_signals(result, sizes, numbers["signals"])
    _table_responses(result, numbers["responses"])
    _table_scaling(result, numbers["scaling"])
    result.notes = notes(sizes, numbers["learning"], numbers["signals"], numbers["responses"])


def notes(sizes, learning, signals, responses) -> str:
    """Plain-language reading of the measured numbers (every number is computed)."""
    res, plain = learning["residual"], learning["plain"]
    depths = sizes["depths"]
    fails = [str(d) for d in depths if res[str(d)]["final_fraction"] >= LOW_LOSS]
    deep = str(depths[-1])
    text = "Reading the numbers. (b) "
    if fails:
        learnt = [str(d) for d in depths if str(d) not in fails]
        text += (
            (f"Residual stacks of {', '.join(learnt)} blocks learn the identity "
             f"within the budget, those of {', '.join(fails)} blocks do not "
             if learnt else "No residual stack learns the identity within the budget ")
            + f"(fraction {res[fails[0]]['final_fraction']:.2f} at {fails[0]}, "
            f"{res[deep]['final_fraction']:.2f} at {deep}, where the plain stack has "
            f"{plain[deep]['final_fraction']:.2f}"
            + (": both output about the mean). " if min(
                res[deep]["final_fraction"], plain[deep]["final_fraction"]) > 0.9
               else "). ")
            + f"Initialised the standard way, every residual branch adds a unit-variance BN "
            f"output, so a deep residual stack starts far from the identity (initial loss "
            f"{res[deep]['initial_loss']:.3g} at {deep} blocks against "
            f"{plain[deep]['initial_loss']:.3g} for the plain one) and the "
            f"optimiser must first silence {deep} random branches. What the residual form "
            f"makes trivial is representing and keeping the identity (part a: F = 0 gives it "
            f"exactly, at any depth); finding it from a random start is easy only for "
            f"shallow stacks here. The seed articles claim the first (the residual can be set "
            f"to zero), not that any optimiser silences {deep} random branches in "
            f"{sizes['steps']} steps; zero-initialising each branch's last BN (gamma = 0, "
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
    small, big = sizes["fig7_depths"]
    r_small, r_big = responses[f"resnet{small}"], responses[f"resnet{big}"]
    text += (
        f"(d) The mean response std of ResNet-{big} differs from ResNet-{small}'s by "
        f"{100 * (r_big['mean_std'] / r_small['mean_std'] - 1):+.1f}%, ResNet-{big}'s from "
        f"plain-{big}'s by "
        f"{100 * (r_big['mean_std'] / responses[f'plain{big}']['mean_std'] - 1):+.1f}%"
        + ("; a difference of a few percent between two single-seed nets is weak evidence."
           if abs(r_big["mean_std"] / r_small["mean_std"] - 1) < 0.05 else "."))
    return text


def _table_exact(result, sizes, exact):
    result.table(f"(a) {sizes['exact_depth']} blocks applied to x: max |out - in| and "
                 f"||out - in|| / ||in||",
                 ["stack", "input", "mode", "max |out - in|", "relative"],
                 [[e["stack"], e["input"], e["mode"], e["max_abs_diff"], e["rel_diff"]]
                  for e in exact.values()])


def _table_learning(result, sizes, learning):
    rows = []
    for depth in sizes["depths"]:
        p, r = learning["plain"][str(depth)], learning["residual"][str(depth)]
        rows.append([depth, p["initial_loss"], p["final_loss"], p["final_fraction"],
                     r["initial_loss"], r["final_loss"], r["final_fraction"]])
    result.table(f"(b) Learning the identity: MSE after {sizes['steps']} Adam steps "
                 f"(fraction = loss / Var(x); 1 = outputs the mean)",
                 ["blocks", "plain: initial", "plain: final", "plain: fraction",
                  "residual: initial", "residual: final", "residual: fraction"], rows)


def _table_signals(result, sizes, signals):
    L = sizes["depths"][-1]
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


def _table_responses(result, stats):
    rows = [[name, s["layers"], s["mean_std"], s["median_std"], min(s["stds"]),
             max(s["stds"])] for name, s in stats.items()]
    result.table("(d) Std of the 3x3 layers' responses (BN outputs) in the trained nets",
                 ["net", "3x3 layers", "mean std", "median std", "min", "max"], rows)


def _table_scaling(result, stats):
    result.table(f"(e) Identity vs shortcuts scaled by {SCALE} (ResNet-20, same recipe)",
                 ["shortcut", "train loss", "train error (%)", "test error (%)"],
                 [["identity (x 1)", stats["identity"]["train_loss"],
                   100 * stats["identity"]["train_error"], 100 * stats["identity"]["test_error"]],
                  [f"scaled (x {SCALE})", stats["scaled"]["train_loss"],
                   100 * stats["scaled"]["train_error"], 100 * stats["scaled"]["test_error"]]])


# ---------------------------------------------------------------------------- figures


def plots(config, numbers: dict) -> list:
    """The three figures: depth and signals, Figure 7, constant scaling."""
    return [plot_depth(config, numbers["sizes"], numbers["learning"], numbers["signals"]),
            plot_responses(config, numbers["responses"]),
            plot_scaling(config, numbers["scaling"])]


def plot_depth(config, sizes, learning, signals) -> str:
    """(b) final loss vs depth; (c) forward RMS and backward gradient norm vs block."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    colours = {"plain": "black", "residual": "C3"}
    ax = axes[0]
    depths = sizes["depths"]
    for kind, by_depth in learning.items():
        ax.plot(depths, [by_depth[str(d)]["final_fraction"] for d in depths],
                marker="o", color=colours[kind], label=kind)
    ax.axhline(1.0, color="grey", ls=":", lw=1, label="outputs the mean")
    ax.axhline(LOW_LOSS, color="C2", ls="--", lw=1, label=f"{LOW_LOSS:g} Var(x)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="blocks", ylabel="final MSE / Var(x)",
           title=f"(b) learning the identity ({sizes['steps']} Adam steps)")
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


def plot_responses(config, stats) -> str:
    """Paper Figure 7: std of layer responses, in layer order and sorted."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6))
    styles = {"plain": "--", "resnet": "-"}
    for i, (name, entry) in enumerate(stats.items()):
        stds = entry["stds"]
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


def plot_scaling(config, stats) -> str:
    """(e) training loss per iteration (or epoch): identity vs scaled shortcuts."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for colour, (kind, entry) in zip(("C3", "C0"), stats.items(), strict=True):
        curve = entry["curve"]
        text = "identity shortcut" if kind == "identity" else f"shortcut x {SCALE}"
        ax.plot(curve["x"], curve["train_loss"], color=colour, lw=1.5, label=text)
    ax.set_yscale("log")
    ax.set(xlabel=stats["identity"]["curve"]["unit"],
           ylabel="training loss (train mode, as trained)",
           title="ResNet-20: identity vs constant scaling")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, config, f"{NAME}_scaling.png")
