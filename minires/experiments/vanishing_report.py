"""The vanishing-gradient demonstration's report: figures, tables, verdicts and notes, all
computed from what :func:`minires.experiments.vanishing.measure` returned."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from minires.experiments.common import DemoConfig, DemoResult, fmt, pyplot, save_figure
from minires.experiments.vanishing import (
    ACTIVATIONS,
    ALIVE_SPREAD,
    INIT_LABELS,
    INITS,
    NAME,
    NEAR_HALF,
    SATURATION,
    SHOWN,
    SIGMOID_BOUND,
    VANISH_RATIO,
    VARIANT_LABELS,
    VARIANTS,
    Sizes,
    key,
    label,
    sigmoid_np,
)

# ---------------------------------------------------------------------------- figures


def plot_factors(config: DemoConfig, chain: dict, grads: dict, depth: int) -> str:
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


def plot_gradients(config: DemoConfig, sizes: Sizes, results: dict) -> str:
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


def plot_activations(config: DemoConfig, stats: dict) -> str:
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




# ---------------------------------------------------------------------------- report


def report(result: DemoResult, config: DemoConfig, sizes: Sizes, chain: dict, grads: dict,
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
    result.notes = notes(main, L)


def notes(main: dict, L: int) -> str:
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
