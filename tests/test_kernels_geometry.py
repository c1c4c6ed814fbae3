"""Tests for minires.kernels.geometry: pair() and output_size(), shared by conv and pooling."""

import numpy as np
import pytest

from minires.kernels import conv, geometry, pool


@pytest.mark.parametrize("value, expected", [
    (3, (3, 3)), ((2, 5), (2, 5)), ([1, 4], (1, 4)), (np.int64(2), (2, 2)),
])
def test_pair_accepts_ints_and_pairs(value, expected):
    got = geometry.pair(value, "k")
    assert got == expected and all(type(v) is int for v in got)


@pytest.mark.parametrize("value", [True, 2.0, (1, 2, 3), (1,), "3", (1, 2.5), None])
def test_pair_rejects_other_values_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"conv2d: stride must be an int or a pair of ints"):
        geometry.pair(value, "stride", where="conv2d")


def test_pair_checks_the_minimum():
    assert geometry.pair(0, "padding", 0) == (0, 0)
    with pytest.raises(ValueError, match=r"padding must be >= 0, got \(1, -1\)"):
        geometry.pair((1, -1), "padding", 0)


@pytest.mark.parametrize("args, expected", [
    ((32, 3, 1, 1), 32), ((32, 3, 2, 1), 16), ((32, 1, 2, 0), 16), ((7, 3, 2, 1, 2), 3),
    ((224, 7, 2, 3), 112), ((112, 3, 2, 1), 56), ((5, 2, 2, 0), 2),
])
def test_output_size_formula(args, expected):
    size, kernel, stride, padding, *dilation = args
    d = dilation[0] if dilation else 1
    assert geometry.output_size(*args) == expected
    assert expected == (size + 2 * padding - d * (kernel - 1) - 1) // stride + 1


def test_conv_and_pool_use_the_one_formula():
    assert conv.conv_output_size is geometry.output_size
    for args in [(9, 3, 2, 1), (8, 2, 2, 0), (5, 3, 1, 1)]:
        assert pool.pool_output_size(*args) == geometry.output_size(*args)
    with pytest.raises(ValueError, match="pooling: window of size 3 .* does not fit"):
        pool.pool_output_size(2, 3, 1, 0)


def test_output_hw_is_output_size_per_axis():
    assert geometry.output_hw(9, 10, (3, 1), (2, 1), (1, 0), (1, 2)) == (5, 10)
