"""The vanishing-gradient demonstration: its claims hold on the tiny sizes, and its parts
(the one-neuron chain, the decay-factor fit, the ratios, the MLP) do what they say.

Outcome assertions are safe here: nothing is trained, everything is float64 at
initialisation.  Measured: the gradient ratios, spreads and decay factors of every
configuration differ by at most 7e-8 (relative) between OPENBLAS_NUM_THREADS=1 and =2,
while the thresholds sit orders of magnitude away (e.g. sigmoid ratio < 1e-3).
"""


import json

import numpy as np
import pytest

from minires.experiments import common, vanishing
from minires.experiments.vanishing import decay_factor, key, sigmoid_chain, summarise
from tests.demo_check import assert_demo_files, assert_each_flip_breaks_its_verdict


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Run the demonstration once in tiny mode and write its files."""
    out = tmp_path_factory.mktemp("vanishing")
    config = common.DemoConfig(tiny=True, out=out, progress=False)
    result = vanishing.run(config)
    report = common.write_result(result, config)
    return result, config, report


def test_sigmoid_mlp_gradient_vanishes(demo):
    result, _, _ = demo
    depth = vanishing.sizes_for(demo[1]).main_depth
    main = result.numbers["gradients"][str(depth)]
    sigmoid = main[key("sigmoid", "plain", "xavier")]
    assert sigmoid["ratio_hidden"] < 1e-3
    assert sigmoid["ratio_all"] < 1e-3
    assert sigmoid["decay_factor"] <= 0.25  # Xavier: gain ~1, so rho ~ rms sigma' <= 1/4
    assert main[key("sigmoid", "plain", "he")]["ratio_hidden"] < 1e-3


def test_relu_he_batchnorm_and_residual_keep_gradients_alive(demo):
    result, config, _ = demo
    main = result.numbers["gradients"][str(vanishing.sizes_for(config).main_depth)]
    for config_key in (key("relu", "plain", "he"), key("sigmoid", "bn", "xavier"),
                       key("sigmoid", "residual", "xavier")):
        norms = np.asarray(main[config_key]["weight_grad_norms"])
        hidden = norms[1:-1]
        assert hidden.max() / hidden.min() < 10, config_key
        assert main[config_key]["spread_hidden"] == pytest.approx(hidden.max() / hidden.min())


def test_chain_symbolic_matches_autograd(demo):
    chain = demo[0].numbers["chain"]
    assert abs(chain["symbolic"] - chain["autograd"]) < 1e-12 * max(1.0, abs(chain["symbolic"]))
    assert max(chain["sigma_prime"]) <= 0.25
    assert chain["max_sigma_prime_on_grid"] == pytest.approx(0.25, abs=1e-12)


def test_every_verdict_holds_in_tiny_mode(demo):
    result = demo[0]
    assert len(result.verdicts) >= 8
    failed = [f"{v.claim}: {v.evidence}" for v in result.verdicts if not v.holds]
    assert not failed, failed


def test_activation_regimes(demo):
    stats = demo[0].numbers["activations"]
    assert stats["std 1"]["saturated_overall"] > 0.5
    assert stats["std 0.01"]["saturated_overall"] == 0
    assert stats["std 0.01"]["std_per_layer"][-1] < stats["Xavier"]["std_per_layer"][-1] / 3
    assert stats["Xavier"]["saturated_overall"] < 0.05


def test_files_written(demo):
    data = assert_demo_files(*demo)
    assert data["numbers"]["chain"]["rel_error"] < 1e-12
    assert all(v["verdict"] == "holds" for v in data["verdicts"])


def test_decay_factor_recovers_a_geometric_sequence():
    layers = np.arange(1, 21)
    for rho in (0.25, 0.9, 1.0, 1.7):
        norms = 3.0 * rho ** (20 - layers)  # shrinks by rho per layer toward the input
        assert decay_factor(norms) == pytest.approx(rho, rel=1e-10)
    noisy = 0.25 ** (20 - layers) * np.exp(np.random.default_rng(0).normal(0, 0.1, 20))
    assert decay_factor(noisy) == pytest.approx(0.25, rel=0.05)
    # explicit layer indices, and zero norms (underflow) left out of the fit
    assert decay_factor([1e-4, 1e-3, 1e-2], layers=[2, 3, 4]) == pytest.approx(0.1)
    assert decay_factor([0.0, 1e-3, 1e-2, 1e-1]) == pytest.approx(0.1)


def test_summarise_uses_hidden_layers():
    norms = [7.0, 1e-4, 1e-3, 1e-2, 1e-1, 50.0]  # input and output layers off the trend
    stats = summarise(norms)
    assert stats["ratio_hidden"] == pytest.approx(1e-3)
    assert stats["spread_hidden"] == pytest.approx(1e3)
    assert stats["decay_factor"] == pytest.approx(0.1)
    assert stats["ratio_all"] == pytest.approx(7.0 / 50.0)


def test_sigmoid_chain_against_finite_differences():
    w, b, x = [1.3, -0.7, 2.1, 0.4], [0.2, -0.1, 0.5, -0.3], 0.8

    def y_of(b1):
        a = x
        for wi, bi in zip(w, [b1] + b[1:], strict=True):
            a = 1.0 / (1.0 + np.exp(-(wi * a + bi)))
        return a

    chain = sigmoid_chain(w, b, x)
    eps = 1e-6
    numeric = (y_of(b[0] + eps) - y_of(b[0] - eps)) / (2 * eps)
    assert chain["autograd"] == pytest.approx(numeric, rel=1e-7)
    assert chain["rel_error"] < 1e-12
    assert chain["y"] == pytest.approx(y_of(b[0]))
    assert all(0 < s <= 0.25 for s in chain["sigma_prime"])


def test_numbers_are_json_and_give_the_same_verdicts(demo):
    """measure returns plain JSON: the verdicts computed from the NAME.json written to disk
    are the demonstration's own, and the histograms drawn are counts of every unit."""
    result, config, _ = demo
    json.dumps(result.numbers)  # no `default=`: every value is a JSON type
    saved = json.loads((config.out / "vanishing.json").read_text())["numbers"]
    assert vanishing.verdicts(saved) == result.verdicts
    sizes = vanishing.sizes_for(config)
    for entry in saved["activations"].values():
        assert len(entry["histogram"]) == sizes.main_depth - 1  # one per hidden layer
        assert all(sum(c) == sizes.hist_batch * sizes.width for c in entry["histogram"])


def given_numbers() -> dict:
    """Hand-made numbers on which every vanishing verdict holds, each with a margin."""
    def grads(ratio, rho, spread):
        return {"ratio_hidden": ratio, "ratio_all": ratio, "decay_factor": rho,
                "spread_hidden": spread, "spread_all": spread}

    main = {key("sigmoid", "plain", "xavier"): grads(1e-4, 0.24, 1e4),
            key("sigmoid", "plain", "he"): grads(1e-3, 0.3, 1e3),
            key("sigmoid", "plain", "normal"): grads(0.5, 0.9, 3.0),
            key("relu", "plain", "he"): grads(1.0, 1.0, 2.0),
            key("sigmoid", "bn", "xavier"): grads(0.8, 0.99, 3.0),
            key("sigmoid", "residual", "xavier"): grads(0.5, 1.01, 4.0)}
    layers = 19
    return {
        "chain": {"rel_error": 1e-15, "symbolic": 0.01, "autograd": 0.01,
                  "sigma_prime": [0.2, 0.1, 0.25, 0.05], "max_sigma_prime_on_grid": 0.25},
        "sizes": {"main_depth": 20, "depths": [5, 20]},
        "gradients": {"5": {key("sigmoid", "plain", "xavier"): grads(0.1, 0.24, 10.0)},
                      "20": main},
        "activations": {
            "std 1": {"saturated_overall": 0.8},
            "std 0.01": {"near_half_per_layer": [1.0] * layers, "saturated_overall": 0.0,
                         "std_per_layer": [0.002] * layers},
            "Xavier": {"near_half_per_layer": [0.3] * layers, "saturated_overall": 0.01,
                       "std_per_layer": [0.2] * layers}},
    }


# One measured quantity moved past its verdict's threshold: (verdict index, path, value).
FLIPS = [
    (0, ("chain", "rel_error"), 1e-9),
    (1, ("chain", "sigma_prime"), [0.2, 0.1, 0.26, 0.05]),
    (1, ("chain", "max_sigma_prime_on_grid"), 0.2500001),
    (2, ("gradients", "20", key("sigmoid", "plain", "xavier"), "ratio_hidden"), 2e-3),
    (3, ("gradients", "20", key("sigmoid", "plain", "xavier"), "decay_factor"), 0.26),
    (4, ("gradients", "5", key("sigmoid", "plain", "xavier"), "ratio_hidden"), 1e-5),
    (5, ("gradients", "20", key("relu", "plain", "he"), "spread_hidden"), 11.0),
    (6, ("gradients", "20", key("sigmoid", "bn", "xavier"), "spread_hidden"), 11.0),
    (7, ("gradients", "20", key("sigmoid", "residual", "xavier"), "spread_hidden"), 11.0),
    (8, ("activations", "std 1", "saturated_overall"), 0.4),
    (9, ("activations", "std 0.01", "near_half_per_layer"), [1.0] * 18 + [0.8]),
    (9, ("activations", "std 0.01", "saturated_overall"), 0.001),
    (10, ("activations", "Xavier", "std_per_layer"), [0.2] * 18 + [0.04]),
    (10, ("activations", "Xavier", "saturated_overall"), 0.06),
]


def test_verdicts_on_given_numbers():
    base = assert_each_flip_breaks_its_verdict(vanishing.verdicts, given_numbers, FLIPS)
    assert len(base) == 11 and sorted({i for i, _, _ in FLIPS}) == list(range(11))
    assert base[4].evidence == "L=5: 1.0e-01, L=20: 1.0e-04"


def test_setup_is_built_before_measuring(tmp_path, demo):
    config = common.DemoConfig(tiny=True, out=tmp_path / "fresh", progress=False)
    text = vanishing.setup(config)
    assert not config.out.exists()  # nothing measured or written
    assert text == demo[0].setup
    assert "MLPs of 5, 20 Linear layers (784 -> 64 -> ... -> 64 -> 10)" in text
