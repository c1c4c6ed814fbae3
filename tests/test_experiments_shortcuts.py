"""The shortcut-options demonstration (paper Table 3): A, B, C on one ResNet-20, its tolerance,
verdicts that follow the numbers, and its files."""

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


def test_close():
    se = common.error_rate_se(0.30, 0.20, 100)
    d = shortcuts.close({"A": 0.30, "B": 0.25, "C": 0.20}, 100)
    assert (d.a, d.b) == ("A", "C") and d.mean == pytest.approx(0.10)
    assert d.se == pytest.approx(se) and d.holds == (0.10 <= 2 * se)
    assert d.holds  # 2 SE = 12.2 points on 100 images
    assert not shortcuts.close({"A": 0.30, "B": 0.25, "C": 0.20}, 10_000).holds
    assert shortcuts.close({"A": 0.0, "B": 0.0, "C": 0.0}, 1000).holds


def test_verdicts_follow_the_numbers(demo):
    result = demo[0]
    n = result.numbers
    options = n["options"]
    test_errors = {o: options[o]["test_error"] for o in "ABC"}
    train_errors = {o: options[o]["train_error"] for o in "ABC"}
    assert n["spread_test_error"] == pytest.approx(max(test_errors.values())
                                                   - min(test_errors.values()))
    expected_test = shortcuts.close(test_errors, n["n_test"])
    expected_train = shortcuts.close(train_errors, n["n_train"])
    assert n["tolerance_test"] == pytest.approx(2 * expected_test.se)
    a, c = test_errors["A"], test_errors["C"]
    a_vs_c = (a - c) <= 2 * common.error_rate_se(a, c, n["n_test"])
    holds = [v.holds for v in result.verdicts]
    assert holds == [expected_test.holds, expected_train.holds, a_vs_c]
    for option in "ABC":
        assert 0.0 <= options[option]["train_error"] <= 1.0
        assert options[option]["curve"]["train_error"]


def _given(test_errors, train_errors, n_test=1000, n_train=1000):
    options = {o: {"parameters": 100 + 10 * i, "test_error": test_errors[i],
                   "train_error": train_errors[i]} for i, o in enumerate("ABC")}
    return {"options": options, "n_train": n_train, "n_test": n_test}


@pytest.mark.parametrize("test_errors, train_errors, expected", [
    ((0.20, 0.20, 0.20), (0.10, 0.10, 0.10), [True, True, True]),
    ((0.30, 0.20, 0.20), (0.10, 0.10, 0.10), [False, True, False]),  # A 10 points behind
    ((0.20, 0.20, 0.30), (0.10, 0.30, 0.10), [False, False, True]),  # C behind: A <= C
    ((0.21, 0.20, 0.20), (0.10, 0.11, 0.10), [True, True, True]),    # within 2 SE
])
def test_verdicts_on_given_numbers(test_errors, train_errors, expected):
    numbers = _given(test_errors, train_errors)
    assert [v.holds for v in shortcuts.verdicts(numbers)] == expected
    assert "+20" in shortcuts.verdicts(numbers)[2].evidence  # C's extra parameters


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
