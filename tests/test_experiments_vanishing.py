"""The vanishing-gradient demonstration: its claims hold on the tiny sizes, and its parts
(the one-neuron chain, the decay-factor fit, the ratios, the MLP) do what they say.

Outcome assertions are safe here: nothing is trained, everything is float64 at
initialisation.  Measured: the gradient ratios, spreads and decay factors of every
configuration differ by at most 7e-8 (relative) between OPENBLAS_NUM_THREADS=1 and =2,
while the thresholds sit orders of magnitude away (e.g. sigmoid ratio < 1e-3).
"""


import numpy as np
import pytest

from minires import backend
from minires.experiments import common, vanishing
from minires.experiments.vanishing import decay_factor, key, sigmoid_chain, summarise
from tests.demo_check import assert_demo_files


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


def test_mlp_structure_and_residual_forward():
    with backend.default_dtype(np.float64):
        model = vanishing.MLP(4, 8, "tanh", "he", batchnorm=True, residual=True)
        assert len(model.linears) == 4 and len(model.acts) == 3 and len(model.norms) == 3
        assert all(float(np.abs(lin.bias.data).max()) == 0 for lin in model.linears)
        x = np.random.default_rng(0).normal(size=(16, 784))
        weight, signal, loss = vanishing.gradient_norms(model, x, np.arange(16) % 10)
    assert weight.shape == (4,) and signal.shape == (3,)
    assert np.all(weight > 0) and np.isfinite(loss)
    with pytest.raises(ValueError, match="init"):
        vanishing.MLP(3, 8, "relu", "orthogonal")
