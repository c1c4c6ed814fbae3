"""Shared pytest fixtures and options for the minires test suite."""

import numpy as np
import pytest

import minires.backend as backend

TORCH_SKIP_REASON = (
    "PyTorch is not installed, so the cross-checks against it are skipped "
    "(install it with `pip install torch==2.13.0`; .ci/run does)"
)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def torch():
    """The torch module, or a skip with a stated reason when it is not installed."""
    module = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    module.set_default_dtype(module.float64)
    return module


@pytest.fixture
def rng():
    """A seeded NumPy generator for test inputs."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _reset_minires_state():
    """Every test starts from float32 default dtype and a fixed minires seed."""
    backend.set_default_dtype(np.float32)
    backend.manual_seed(0)
    yield
    backend.set_default_dtype(np.float32)
