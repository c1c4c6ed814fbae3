"""The shortcut-options demonstration (paper Table 3): A, B, C on one ResNet-20, its tolerance,
verdicts that follow the numbers, and its files."""

import math

import pytest

from minires.experiments import common, shortcuts
from minires.models import count_parameters, get_model
from tests.demo_check import assert_demo_files


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("shortcuts")
    config = common.DemoConfig(tiny=True, out=out, progress=False)
    result = shortcuts.run(config)
    report = common.write_result(result, config)
    return result, config, report


def test_parameters_of_the_options(demo):
    options = demo[0].numbers["options"]
    a, b, c = (options[o]["parameters"] for o in "ABC")
    assert a < b < c
    # option A has no shortcut parameters: exactly the plain net's count
    widths = shortcuts.recipe_for(demo[1]).widths
    assert a == count_parameters(get_model("plain20", in_channels=1, widths=widths))
    # B adds a 1x1 conv + BN at the two shape changes (w1 -> w2, w2 -> w3)
    w1, w2, w3 = widths
    assert b - a == (w1 * w2 + 2 * w2) + (w2 * w3 + 2 * w3)
    assert demo[0].numbers["extra_parameters_c"] == c - a


def test_tolerance():
    assert shortcuts.tolerance([0.5, 0.5, 0.5], 100) == pytest.approx(2 * math.sqrt(0.5 / 100))
    assert shortcuts.tolerance([0.0, 0.0, 0.0], 1000) == shortcuts.MIN_TOLERANCE
    assert shortcuts.tolerance([0.02, 0.03, 0.04], 1000) == pytest.approx(
        max(0.01, 2 * math.sqrt(2 * 0.03 * 0.97 / 1000)))


def test_verdicts_follow_the_numbers(demo):
    result = demo[0]
    n = result.numbers
    options = n["options"]
    test_errors = [options[o]["test_error"] for o in "ABC"]
    train_errors = [options[o]["train_error"] for o in "ABC"]
    assert n["spread_test_error"] == pytest.approx(max(test_errors) - min(test_errors))
    assert n["tolerance_test"] == pytest.approx(shortcuts.tolerance(test_errors, n["n_test"]))
    assert n["tolerance_train"] == pytest.approx(shortcuts.tolerance(train_errors,
                                                                     n["n_train"]))
    holds = [v.holds for v in result.verdicts]
    assert holds == [n["spread_test_error"] <= n["tolerance_test"],
                     n["spread_train_error"] <= n["tolerance_train"],
                     n["test_gain_c_over_a"] <= n["tolerance_test"]]
    for option in "ABC":
        assert 0.0 <= options[option]["train_error"] <= 1.0
        assert options[option]["curve"]["train_error"]


def test_option_a_is_the_shared_resnet20(demo):
    """A is trained without keywords, so its cache entry is the default ResNet-20's."""
    options = demo[0].numbers["options"]
    assert options["A"]["cache_key"].startswith("resnet20-seed0-")
    assert len({options[o]["cache_key"] for o in "ABC"}) == 3


def test_files_written(demo):
    data = assert_demo_files(*demo)
    assert len(data["verdicts"]) == 3


@pytest.mark.slow
def test_quick_mode_all_options_train(tmp_path):
    """The quick demonstration (three ResNet-20 trainings): every option trains (training
    error far below chance) and C's projections buy no more than the tolerance."""
    result = shortcuts.run(common.DemoConfig(out=tmp_path, progress=False))
    for option in "ABC":
        assert result.numbers["options"][option]["train_error"] < 0.2
    assert result.verdicts[2].holds, result.verdicts[2].evidence
