"""Identity mappings: a residual block can do nothing, and what that buys a deep net.

The argument of the ResNet paper (section 3.1; seed 000 section 3; seed 004): a deeper net
should be no worse than a shallower one, because the extra layers *could* be identity
mappings.  Plain stacks of nonlinear layers find the identity hard to approximate; a
residual block y = relu(F(x) + x) is the identity as soon as F(x) = 0, "the solver may
simply drive the weights of the multiple nonlinear layers toward zero".  He et al.'s
follow-up, "Identity Mappings in Deep Residual Networks" (2016), makes the same point from
the signal's side: with identity shortcuts x_L = x_l + sum_{i=l}^{L-1} F(x_i), so the
forward signal and the backward gradient always have a direct path between any two blocks.

What is measured, in five parts:

(a) Exactly the identity.  A stack of 100 BasicBlocks whose last BatchNorm of each branch
    has gamma = 0 (and beta = 0, as initialised): F(x) = 0, so every block computes
    relu(0 + x) = x for x >= 0 (inside a ResNet a block's input is the output of a ReLU, so
    it is non-negative).  max |out - in| is measured in float32 in train and eval mode; the
    plain stack (same layers, no shortcut), with that gamma = 0 or as initialised, is not
    the identity.  With signed input the residual stack computes relu(x), not x: that is
    the condition, measured too.

(b) Learning the identity.  Plain and residual stacks of 1 to 50 BasicBlocks (small width,
    small maps), both initialised the standard way (He-normal convolutions, BN gamma = 1),
    are trained with Adam for a fixed number of steps to reproduce their input
    x = |N(0, 1)| (a fresh batch every step, MSE loss).  The final loss is the mean of the
    last 10 steps' losses, also given as a fraction of Var(x) = 1 - 2/pi: 1 means "outputs
    the mean, learned nothing", 0 is the identity.

(c) Signals at initialisation.  In the deepest stacks of (b), in train mode: the RMS of
    every block's output x_l on a batch (forward) and the norm of dL/dx_l for the loss
    L = sum(x_L * r) / batch with a fixed random r (backward: the same upstream gradient for
    both stacks).

(d) Paper Figure 7: the standard deviation of every 3x3 layer's response (the output of its
    BN, before the ReLU or the addition: bn1 of the first convolution, then bn1 and bn2 of
    every block) in *trained* plain-20/56 and ResNet-20/56 (the nets the degradation
    demonstration trains, from the shared cache), on test images, eval mode.  The summary
    statistic of a net is the mean of its per-layer stds.

(e) Identity Mappings, Table 1 ("constant scaling"): a ResNet whose shortcuts are all
    multiplied by 0.5, y = relu(F(x) + 0.5 x), trained with the same recipe and seed as
    the plain identity-shortcut ResNet.  The paper reports, on ResNet-110 / CIFAR-10,
    12.35% test error against 6.61% for the identity and a higher training loss:
    "optimization has difficulties"; scaling by 0.5 multiplies the direct path from block
    l to block L by 0.5^(L - l).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

import numpy as np

from minires import backend, nn, optim
from minires import functional as F
from minires.autograd import Tensor, no_grad
from minires.experiments.common import (
    DemoConfig,
    DemoResult,
    Stopwatch,
    Verdict,
    decay_factor,
    demonstrate,
    forward_eval,
    lazy,
    progress,
)
from minires.experiments.training import (
    RunSpec,
    load_split,
    recipe_for,
    run_numbers,
    train_or_load,
)
from minires.models import BasicBlock

NAME = "identity"
TITLE = "Identity mappings: a residual block can do nothing, and what that buys"

CLAIM = (
    "A residual block is the identity when its residual branch is zero: a stack of 100 "
    "blocks with the branch's last BN gamma = 0 reproduces a non-negative input exactly, "
    "a plain stack does not. Trained to reproduce their input, a deep enough plain stack "
    "cannot learn even the identity, while a residual stack of that depth learns it by "
    "driving its residual toward zero (seed 004). At initialisation the "
    "shortcuts keep the forward signal and the backward gradient from vanishing. Trained "
    "ResNets have smaller layer responses than plain nets, the deeper ResNet smaller still "
    "(paper Fig. 7). Scaling the shortcut by 0.5 trains worse than the identity.")
SOURCE = (
    "He et al. 2016, 'Deep Residual Learning for Image Recognition', section 3.1 (identity "
    "mappings, 'drive the weights toward zero') and section 4.2 / Figure 7 (std of layer "
    "responses); He et al. 2016, 'Identity Mappings in Deep Residual Networks', eqs. 4-5 "
    "(direct propagation) and Table 1 (constant scaling 0.5: 12.35% vs 6.61% error on "
    "ResNet-110); seed article 000, section 3 (H(x) = F(x) + x, identity when F = 0); seed "
    "article 004 ('if the network is deep enough it may be unable to learn a function as "
    "simple as the identity'; 'the network can learn the identity simply by setting the "
    "residual to zero').")

VAR_ABS_NORMAL = 1.0 - 2.0 / math.pi  # Var(|z|) for z ~ N(0, 1): the loss of predicting the mean
LOW_LOSS = 0.1  # "low": final loss below 10% of Var(x) (90% of the variance reproduced)
FAILED = 0.5  # "cannot learn it": final loss above half of Var(x)
VANISHED = 0.1  # "vanishes": a norm below 1/10 of its value where the signal enters
SCALE = 0.5  # Identity Mappings Table 1's constant scaling
WORSE_MARGIN = 0.10  # "trains worse": a final training loss higher by more than 10%


@dataclass(frozen=True)
class Sizes:
    """How big each part is (chosen by ``config.pick``)."""

    width: int  # channels of the block stacks in (a)-(c)
    size: int  # their maps are size x size
    batch: int  # images per step / measurement
    exact_depth: int  # blocks in (a)
    depths: tuple  # blocks per stack in (b); the last is (c)'s depth
    steps: int  # Adam steps in (b)
    lr: float  # Adam learning rate in (b)
    fig7_depths: tuple  # the plain/ResNet depths of (d)
    response_images: int  # test images for (d)


def sizes_for(config: DemoConfig) -> Sizes:
    return config.pick(
        tiny=Sizes(width=4, size=6, batch=8, exact_depth=100, depths=(1, 3, 10), steps=60,
                   lr=1e-2, fig7_depths=(20, 32), response_images=100),
        quick=Sizes(width=8, size=6, batch=16, exact_depth=100, depths=(1, 2, 5, 10, 20, 50),
                    steps=150, lr=1e-2, fig7_depths=(20, 56), response_images=500),
        full=Sizes(width=16, size=8, batch=32, exact_depth=100,
                   depths=(1, 2, 5, 10, 20, 50, 100), steps=500, lr=1e-2,
                   fig7_depths=(20, 56), response_images=1000))


def block_stack(depth: int, width: int, residual: bool, seed: int,
                zero_gamma: bool = False) -> nn.Sequential:
    """``depth`` BasicBlocks of ``width`` channels, stride 1 (the shape never changes).

    ``zero_gamma`` sets every block's bn2.weight (gamma of the branch's last BN) to 0:
    F(x) = beta = 0 (BasicBlock's ``zero_init_residual``).
    """
    backend.manual_seed(seed)
    return nn.Sequential(*[BasicBlock(width, width, 1, residual=residual,
                                      zero_init_residual=zero_gamma) for _ in range(depth)])


def abs_normal(rng, sizes: Sizes) -> np.ndarray:
    """A batch x = |N(0, 1)|, shape (batch, width, size, size), float32."""
    shape = (sizes.batch, sizes.width, sizes.size, sizes.size)
    return np.abs(rng.standard_normal(shape)).astype(np.float32)


# ---------------------------------------------------------------------------- (a) exactness

EXACT_CASES = (("plain", False, False), ("plain, gamma = 0", False, True),
               ("residual", True, False), ("residual, gamma = 0", True, True))


def exact_identity(sizes: Sizes, seed: int) -> dict:
    """max |out - in| and ||out - in|| / ||in|| of 100-block stacks, train and eval mode."""
    rng = np.random.default_rng(seed)
    x = abs_normal(rng, sizes)
    signed = rng.standard_normal(x.shape).astype(np.float32)
    results = {}
    for name, residual, zero in EXACT_CASES:
        stack = block_stack(sizes.exact_depth, sizes.width, residual, seed, zero)
        inputs = [("non-negative", x)] + ([("signed", signed)] if residual and zero else [])
        for what, data in inputs:
            for mode in ("train", "eval"):
                stack.train(mode == "train")
                with no_grad():
                    out = backend.to_numpy(stack(Tensor(data)).data)
                diff = out.astype(np.float64) - data
                results[f"{name} | {what} | {mode}"] = {
                    "stack": name, "input": what, "mode": mode,
                    "max_abs_diff": float(np.abs(diff).max()),
                    "rel_diff": float(np.linalg.norm(diff) / np.linalg.norm(data)),
                    "dtype": str(out.dtype)}
    return results


# ---------------------------------------------------------------------------- (b) learning


def learn_identity(depth: int, residual: bool, sizes: Sizes, seed: int) -> dict:
    """Train a stack with Adam to reproduce x = |N(0, 1)| (fresh batch each step, MSE)."""
    stack = block_stack(depth, sizes.width, residual, seed)
    optimizer = optim.Adam(stack.parameters(), lr=sizes.lr)
    rng = np.random.default_rng(seed + 1)
    losses = []
    for _ in range(sizes.steps):
        x = abs_normal(rng, sizes)
        loss = F.mse_loss(stack(Tensor(x)), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
    final = float(np.mean(losses[-10:]))
    return {"losses": losses, "initial_loss": losses[0], "final_loss": final,
            "final_fraction": final / VAR_ABS_NORMAL}


# ---------------------------------------------------------------------------- (c) signals


def signal_norms(depth: int, residual: bool, sizes: Sizes, seed: int) -> dict:
    """Forward RMS of x_0..x_L and backward ||dL/dx_l|| at initialisation (train mode)."""
    stack = block_stack(depth, sizes.width, residual, seed)
    rng = np.random.default_rng(seed + 2)
    x = abs_normal(rng, sizes)
    r = rng.standard_normal(x.shape).astype(np.float32)
    h = Tensor(x, requires_grad=True)
    outputs = [h]
    for block in stack:
        h = block(h)
        h.retain_grad()
        outputs.append(h)
    loss = (h * Tensor(r)).sum() / sizes.batch
    loss.backward()
    forward = [float(np.sqrt(np.mean(np.square(backend.to_numpy(o.data), dtype=np.float64))))
               for o in outputs]
    backward = [float(np.linalg.norm(backend.to_numpy(o.grad.data).astype(np.float64)))
                for o in outputs]
    f, b = np.asarray(forward), np.asarray(backward)
    blocks = np.arange(len(b))
    return {"forward_rms": forward, "backward_norm": backward,
            "forward_min_ratio": float(f.min() / f[0]),  # vs the input
            "backward_min_ratio": float(b.min() / b[-1]),  # vs the output
            "forward_spread": float(f.max() / f.min()),
            "backward_spread": float(b.max() / b.min()),
            "backward_input_over_output": float(b[0] / b[-1]),
            "backward_factor": decay_factor(b, blocks)}


# ---------------------------------------------------------------------------- (d) Figure 7


def layer_response_stds(model, images: np.ndarray) -> list:
    """Std of every 3x3 layer's response (its BN output, before ReLU / addition), in forward
    order: the stem's bn1, then each block's bn1 and its ``response_layer`` (bn2).
    Eval mode, no graph; the model's mode is restored."""
    stds = []

    def record(module, inputs, output):
        stds.append(float(np.std(backend.to_numpy(output.data), dtype=np.float64)))

    layers = [model.bn1] if hasattr(model, "bn1") else []
    for _, block in model.blocks():
        layers += [block.bn1, getattr(block, block.response_layer)]
    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        forward_eval(model, images)
    finally:
        for handle in handles:
            handle.remove()
    return stds

# ---------------------------------------------------------------------------- setup


def setup(config: DemoConfig) -> str:
    """What is built and measured, fixed before anything is measured."""
    sizes, recipe = sizes_for(config), recipe_for(config)
    L = sizes.depths[-1]
    return (
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


# ---------------------------------------------------------------------------- measurement


def planned_runs(config: DemoConfig) -> list:
    """The nets of (d) and (e) (trained by ``demo`` in parallel beforehand)."""
    recipe = recipe_for(config)
    return ([RunSpec.of(f"{kind}{depth}", config.seed, recipe)
             for depth in sizes_for(config).fig7_depths for kind in ("plain", "resnet")]
            + [RunSpec.of("resnet20", config.seed, recipe),
               RunSpec.of("resnet20", config.seed, recipe,
                          label=f"ResNet-20, shortcut x {SCALE}", shortcut_scale=SCALE)])


def response_statistics(responses: dict, depths) -> dict:
    """Per net its layers' response stds, their mean and median; per ResNet also the
    fraction of its layers whose std is below the plain net's of the same depth."""
    stats = {name: {"stds": s, "mean_std": float(np.mean(s)), "median_std":
                    float(np.median(s)), "layers": len(s)} for name, s in responses.items()}
    for depth in depths:
        plain, res = stats[f"plain{depth}"], stats[f"resnet{depth}"]
        res["fraction_below_plain"] = float(np.mean(np.asarray(res["stds"])
                                                    < np.asarray(plain["stds"])))
    return stats


def measure(config: DemoConfig) -> dict:
    """(a)-(e), JSON-able: the exactness table, the learning runs (keyed by depth as a
    string), the signals at initialisation, the Figure-7 response statistics of trained nets
    and the scaled-shortcut comparison (final losses, errors and training curves)."""
    sizes = sizes_for(config)
    recipe = recipe_for(config)
    with Stopwatch() as cheap:
        exact = exact_identity(sizes, config.seed)
        jobs = [(d, r) for d in sizes.depths for r in (False, True)]
        learning = {}
        for depth, residual in progress(jobs, "identity: learning the identity",
                                        config.progress):
            learning.setdefault("residual" if residual else "plain", {})[str(depth)] = \
                learn_identity(depth, residual, sizes, config.seed)
        signals = {kind: signal_norms(sizes.depths[-1], kind == "residual", sizes,
                                      config.seed) for kind in ("plain", "residual")}

    with Stopwatch() as trained:
        images = load_split(config, "test", sizes.response_images)[0]
        nets, responses = {}, {}
        for depth in sizes.fig7_depths:
            for kind in ("plain", "resnet"):
                name = f"{kind}{depth}"
                run_ = train_or_load(config, name, config.seed, recipe)
                nets[name] = run_
                responses[name] = layer_response_stds(run_.model, images)
        scaled = {"identity": nets.get("resnet20") or train_or_load(config, "resnet20",
                                                                      config.seed, recipe),
                  "scaled": train_or_load(config, "resnet20", config.seed, recipe,
                                          label=f"ResNet-20, shortcut x {SCALE}",
                                          shortcut_scale=SCALE)}
    training_seconds = {name: r.seconds for name, r in
                        list(nets.items()) + [("resnet20_scale0.5", scaled["scaled"])]}
    scaling = {kind: run_numbers(run_) | {"train_loss_curve": run_.history["train_loss"]}
               for kind, run_ in scaled.items()}
    return {"sizes": asdict(sizes), "recipe": dict(recipe.__dict__),
            "thresholds": {"low_loss_fraction": LOW_LOSS, "vanished": VANISHED,
                           "worse_margin": WORSE_MARGIN, "var_abs_normal": VAR_ABS_NORMAL,
                           "failed_fraction": FAILED},
            "exact": exact, "learning": learning, "signals": signals,
            "responses": response_statistics(responses, sizes.fig7_depths),
            "scaling": scaling,
            "timing": {"stacks_s": cheap.seconds, "trained_nets_s": trained.seconds,
                       "training_seconds_now": training_seconds}}


# ---------------------------------------------------------------------------- verdicts


def fractions(numbers: dict, kind: str) -> list:
    """Final loss / Var(x) of the ``kind`` ("plain" or "residual") stacks, by depth."""
    return [numbers["learning"][kind][str(d)]["final_fraction"]
            for d in numbers["sizes"]["depths"]]


def rescued_depths(numbers: dict) -> list:
    """The depths at which the plain stack cannot learn the identity (fraction above
    FAILED) and the residual stack learns it (below LOW_LOSS)."""
    return [d for d, r, p in zip(numbers["sizes"]["depths"], fractions(numbers, "residual"),
                                 fractions(numbers, "plain"), strict=True)
            if p > FAILED and r < LOW_LOSS]


def exact_cases(numbers: dict, stack: str) -> list:
    """The rows of (a) for the zero-gamma residual stack on non-negative input
    (``stack="residual"``) or for both plain stacks (``stack="plain"``)."""
    rows = numbers["exact"].values()
    if stack == "residual":
        return [e for e in rows
                if e["stack"] == "residual, gamma = 0" and e["input"] == "non-negative"]
    return [e for e in rows if e["stack"].startswith("plain")]


def verdicts(numbers: dict) -> list:
    """One verdict per claim, in the order (a) exactness, (b) learning, (c) signals,
    (d) Figure 7, (e) constant scaling."""
    sizes, signals = numbers["sizes"], numbers["signals"]
    depths, L = sizes["depths"], sizes["depths"][-1]
    zero, plain_exact = exact_cases(numbers, "residual"), exact_cases(numbers, "plain")
    res, plain = fractions(numbers, "residual"), fractions(numbers, "plain")
    reached = rescued_depths(numbers)
    s_res, s_plain = signals["residual"], signals["plain"]
    stats, (small, big) = numbers["responses"], sizes["fig7_depths"]
    pairs = [(d, stats[f"resnet{d}"]["mean_std"], stats[f"plain{d}"]["mean_std"],
              stats[f"resnet{d}"]["fraction_below_plain"]) for d in sizes["fig7_depths"]]
    ident, half = numbers["scaling"]["identity"], numbers["scaling"]["scaled"]
    ratio = half["train_loss"] / ident["train_loss"]
    return [
        Verdict(f"{sizes['exact_depth']} residual blocks with gamma = 0 compute exactly the "
                f"identity on non-negative input (max |out - in| = 0 in float32, train and "
                f"eval mode)",
                all(e["max_abs_diff"] == 0.0 for e in zero),
                ", ".join(f"{e['mode']}: {e['max_abs_diff']:g}" for e in zero)),
        Verdict("The plain stack is not the identity, with gamma = 0 or as initialised "
                "(relative difference above 0.5)",
                all(e["rel_diff"] > 0.5 for e in plain_exact),
                ", ".join(f"{e['stack']} ({e['mode']}): {e['rel_diff']:.3g}"
                          for e in plain_exact)),
        Verdict(f"Plain stacks get worse with depth (final loss at {L} blocks above that at "
                f"{depths[0]}, and above {FAILED:g} Var(x))",
                plain[-1] > plain[0] and plain[-1] > FAILED,
                "plain fractions " + ", ".join(f"{d}: {v:.3g}" for d, v in
                                               zip(depths, plain, strict=True))),
        Verdict(f"Where a plain stack cannot learn the identity (final loss above {FAILED:g} "
                f"Var(x)), a residual stack of the same depth learns it (below {LOW_LOSS:g} "
                f"Var(x))",
                bool(reached),
                (f"at {', '.join(map(str, reached))} block(s): " if reached else "at no depth: ")
                + ", ".join(f"{d}: residual {r:.3g} vs plain {p:.3g}" for d, r, p in
                            zip(depths, res, plain, strict=True))),
        Verdict(f"Through {L} residual blocks neither the forward signal nor the backward "
                f"gradient vanishes (never below 1/{1 / VANISHED:g} of its value where it "
                f"enters)",
                s_res["forward_min_ratio"] >= VANISHED and s_res["backward_min_ratio"] >= VANISHED,
                f"forward: min/input {s_res['forward_min_ratio']:.3g}; backward: min/output "
                f"{s_res['backward_min_ratio']:.3g}; input/output gradient "
                f"{s_res['backward_input_over_output']:.3g}"),
        Verdict("The residual stack keeps the gradient norm within a narrower range across "
                "depth than the plain stack (max/min over the blocks)",
                s_res["backward_spread"] < s_plain["backward_spread"],
                f"residual {s_res['backward_spread']:.3g} (rho {s_res['backward_factor']:.3f} "
                f"per block), plain {s_plain['backward_spread']:.3g} (rho "
                f"{s_plain['backward_factor']:.3f})"),
        Verdict("ResNet responses are generally smaller than the plain nets' (mean std over "
                "the layers, at both depths)",
                all(r < p for _, r, p, _ in pairs),
                "; ".join(f"depth {d}: ResNet {r:.3f} vs plain {p:.3f} (ResNet smaller at "
                          f"{100 * b:.0f}% of the layers)" for d, r, p, b in pairs)),
        Verdict(f"The deeper ResNet has smaller responses (mean std of ResNet-{big} below "
                f"ResNet-{small})",
                stats[f"resnet{big}"]["mean_std"] < stats[f"resnet{small}"]["mean_std"],
                f"ResNet-{big} {stats[f'resnet{big}']['mean_std']:.3f}, ResNet-{small} "
                f"{stats[f'resnet{small}']['mean_std']:.3f} (plain-{big} "
                f"{stats[f'plain{big}']['mean_std']:.3f}, plain-{small} "
                f"{stats[f'plain{small}']['mean_std']:.3f})"),
        Verdict(f"Scaling the shortcut by {SCALE} trains worse than the identity (final "
                f"training loss higher by more than {100 * WORSE_MARGIN:.0f}%)",
                ratio > 1 + WORSE_MARGIN,
                f"training loss {half['train_loss']:.4f} vs {ident['train_loss']:.4f} (ratio "
                f"{ratio:.2f}); training error {100 * half['train_error']:.2f}% vs "
                f"{100 * ident['train_error']:.2f}%; test error "
                f"{100 * half['test_error']:.2f}% vs {100 * ident['test_error']:.2f}%"),
    ]


# ---------------------------------------------------------------------------- the demonstration


# The figures, the tables and the notes live in the report module, which imports this one.
plots = lazy("minires.experiments.identity_report", "plots")
report = lazy("minires.experiments.identity_report", "report")


def run(config: DemoConfig) -> DemoResult:
    """setup -> measure -> verdicts, then the report and the figures
    (:func:`minires.experiments.common.demonstrate`)."""
    return demonstrate(sys.modules[__name__], config)
