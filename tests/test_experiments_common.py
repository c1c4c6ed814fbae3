"""The verdict statistics of minires.experiments.common: "A <= B" and "A > B" over seeds,
with the rule fixed in code (mean paired difference against 2 standard errors)."""

import math

import numpy as np
import pytest

from minires.experiments.common import (
    SE_MULTIPLE,
    at_most,
    error_rate_se,
    greater,
    paired_difference,
)


def test_paired_difference_and_its_standard_error():
    d, mean, se = paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(d, [2.0, 3.0, 4.0])
    assert mean == pytest.approx(3.0)
    assert se == pytest.approx(1.0 / math.sqrt(3))  # std(ddof=1) = 1
    assert math.isnan(paired_difference([1.0], [0.0])[2])
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference([1.0, 2.0], [1.0])


def test_at_most_holds_below_zero_or_within_two_standard_errors():
    assert at_most("A", "B", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4]).holds  # mean -0.1
    # mean +0.1, SE = 0.1 / sqrt(3) * ... : differences 0.0, 0.1, 0.2 -> SE 0.0577; 2 SE 0.115
    within = at_most("A", "B", [0.0, 0.1, 0.2], [0.0, 0.0, 0.0])
    assert within.mean == pytest.approx(0.1) and within.holds
    assert within.se == pytest.approx(0.1 / math.sqrt(3))
    # the same mean with a tiny spread: beyond 2 SE, does not hold
    beyond = at_most("A", "B", [0.099, 0.1, 0.101], [0.0, 0.0, 0.0])
    assert not beyond.holds and beyond.se_source == "seeds"


def test_greater_needs_the_difference_beyond_two_standard_errors():
    assert greater("A", "B", [0.099, 0.1, 0.101], [0.0, 0.0, 0.0]).holds
    assert not greater("A", "B", [0.0, 0.1, 0.2], [0.0, 0.0, 0.0]).holds  # within 2 SE
    assert not greater("A", "B", [0.0, 0.0], [0.0, 0.0]).holds  # equal: not greater
    assert not greater("A", "B", [-0.2, -0.3], [0.0, 0.0]).holds


def test_one_seed_uses_the_measurement_standard_error():
    se = error_rate_se(0.10, 0.12, 1000)
    assert se == pytest.approx(math.sqrt(2 * 0.11 * 0.89 / 1000))
    d = at_most("A", "B", [0.12], [0.10], measurement_se=se)
    assert d.se_source == "measurement" and d.holds == (0.02 <= SE_MULTIPLE * se)
    assert not greater("A", "B", [0.12], [0.10], measurement_se=se).holds
    # no standard error at all: the plain comparison
    bare = at_most("A", "B", [0.12], [0.10])
    assert bare.se == 0.0 and bare.se_source == "none" and not bare.holds
    assert greater("A", "B", [0.12], [0.10]).holds


def test_evidence_prints_the_numbers_and_the_standard_error():
    d = at_most("ResNet-56", "ResNet-20", [0.12, 0.10], [0.10, 0.10])
    text = d.evidence(100, " points")
    assert "ResNet-56 - ResNet-20 = +1 points" in text
    assert f"standard error {100 * d.se:.3g} points over 2 seeds" in text
    assert "+2, +0" in text
    assert d.as_dict()["holds"] == d.holds
