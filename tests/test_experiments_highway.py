"""The highway demonstration: gates per block, gate-bias initialisation, the comparison rules,
and its files."""

import math

import numpy as np
import pytest

from minires import backend
from minires.experiments import common, highway
from minires.models import get_model
from tests.demo_check import assert_demo_files


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("highway")
    config = common.DemoConfig(tiny=True, out=out, progress=False)
    result = highway.run(config)
    report = common.write_result(result, config)
    return result, config, report


def test_gate_means_at_initialisation_are_sigmoid_of_the_bias():
    backend.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((4, 1, 12, 12)).astype(np.float32)
    for bias in (0.0, -1.0, -3.0):
        model = get_model("highway20", in_channels=1, widths=(4, 8, 16), gate_bias=bias)
        gates = highway.gate_means(model, x)
        assert len(gates) == 9
        assert gates == pytest.approx([highway.sigmoid(bias)] * 9, abs=1e-6)
        assert model.training  # mode restored


def test_gates_after_training(demo):
    nets = demo[0].numbers["nets"]
    for bias in highway.GATE_BIASES:
        entry = nets[f"{bias:g}"]
        assert entry["initial_gate"] == pytest.approx(1 / (1 + math.exp(-bias)))
        assert len(entry["gate_per_block"]) == 9
        assert all(0 < g < 1 for g in entry["gate_per_block"])
        assert entry["mean_gate"] == pytest.approx(np.mean(entry["gate_per_block"]))
    # started at -3 (T = 0.047), the transform gates are still mostly shut after training:
    # measured mean T 0.0475 (seed 0) and 0.0474 (seed 1) after the tiny run's 10 steps,
    # against the 0.5 threshold: a margin of 0.45, the spread below 1e-3.
    assert nets["-3"]["mean_gate"] < highway.CLOSED
    assert demo[0].verdicts[3].holds


def test_depth_is_where_a_plain_net_fails():
    """Quick and full compare 56-layer nets (the degradation demonstration's plain-56 fails
    there); the tests' tiny run uses 20 layers, and the labels follow the depth."""
    assert highway.depth_for(common.DemoConfig()) == 56
    assert highway.depth_for(common.DemoConfig(mode="full")) == 56
    assert highway.depth_for(common.DemoConfig(tiny=True)) == 20
    specs = highway.planned(common.DemoConfig())
    assert [s.name for s in specs.values()] == ["plain56", "resnet56"] + ["highway56"] * 3
    assert [dict(s.kwargs).get("gate_bias") for s in specs.values()][2:] == [0.0, -1.0, -3.0]
    assert highway.label("-3", 56) == "highway-56, b_T = -3"


def test_parameters(demo):
    nets = demo[0].numbers["nets"]
    assert nets["plain"]["parameters"] == nets["resnet"]["parameters"]
    assert nets["0"]["parameters"] == nets["-1"]["parameters"] == nets["-3"]["parameters"]
    assert nets["0"]["parameters"] > nets["resnet"]["parameters"]  # the gate convolutions


def test_comparison_rules():
    """One seed: training errors compared against 2 binomial standard errors on n images."""
    ref = {"train_loss": 1.0, "train_error": 0.30}
    se = common.error_rate_se(0.31, 0.30, 1000)  # 0.0206: 2 SE = 4.1 points
    assert highway.at_least_as_well({"train_error": 0.31}, ref, 1000).holds
    assert highway.at_least_as_well({"train_error": 0.30 + 1.9 * se}, ref, 1000).holds
    assert not highway.at_least_as_well({"train_error": 0.36}, ref, 1000).holds
    assert highway.better({"train_error": 0.20}, ref, 1000).holds
    assert not highway.better({"train_error": 0.28}, ref, 1000).holds  # within 2 SE
    assert not highway.better({"train_error": 0.20}, ref, 10).holds  # too few images


def test_verdicts_follow_the_numbers(demo):
    result = demo[0]
    nets = result.numbers["nets"]
    n = result.numbers["n_train"]
    best = result.numbers["best_highway"]
    assert best == min(("0", "-1", "-3"),
                       key=lambda k: (nets[k]["train_error"], nets[k]["train_loss"]))
    expected = [
        all(highway.at_least_as_well(nets[k], nets["0"], n).holds for k in ("-1", "-3")),
        highway.better(nets[best], nets["plain"], n).holds,
        highway.at_least_as_well(nets["resnet"], nets[best], n).holds,
        nets["-3"]["mean_gate"] < highway.CLOSED,
    ]
    assert [v.holds for v in result.verdicts] == expected
    for name, d in result.numbers["comparisons"].items():
        assert d["se_source"] == "measurement", name
        assert "standard error" in " ".join(v.evidence for v in result.verdicts)


def _given(errors, gate_minus3=0.05, n=1000):
    """Numbers as measure returns them: training errors for plain, resnet, 0, -1, -3."""
    nets = {}
    for kind, error in zip(("plain", "resnet", "0", "-1", "-3"), errors, strict=True):
        nets[kind] = {"train_error": error, "train_loss": error, "parameters": 10}
        if kind not in ("plain", "resnet"):
            gate = gate_minus3 if kind == "-3" else 0.5
            nets[kind].update(initial_gate=highway.sigmoid(float(kind)), mean_gate=gate,
                              gate_per_block=[gate] * 9)
    return {"nets": nets, "best_highway": highway.best_highway(nets), "n_train": n,
            "depth": 56}


@pytest.mark.parametrize("errors, gate, expected", [
    ((0.50, 0.10, 0.20, 0.20, 0.20), 0.05, [True, True, True, True]),
    ((0.50, 0.10, 0.20, 0.30, 0.20), 0.05, [False, True, True, True]),  # -1 10 points worse
    ((0.21, 0.10, 0.20, 0.20, 0.20), 0.05, [True, False, True, True]),  # highway ~ plain
    ((0.50, 0.30, 0.20, 0.20, 0.20), 0.60, [True, True, False, False]),  # ResNet behind
])
def test_verdicts_on_given_numbers(errors, gate, expected):
    numbers = _given(errors, gate)
    assert [v.holds for v in highway.verdicts(numbers)] == expected


def test_files_written(demo):
    data = assert_demo_files(*demo)
    assert len(data["verdicts"]) == 4


@pytest.mark.slow
def test_quick_mode_gates_and_residual(tmp_path):
    """The quick demonstration (five 20-layer trainings)."""
    result = highway.run(common.DemoConfig(out=tmp_path, progress=False))
    assert result.verdicts[2].holds, result.verdicts[2].evidence  # ResNet >= best highway
    assert result.verdicts[3].holds, result.verdicts[3].evidence  # b_T = -3: T < 0.5
