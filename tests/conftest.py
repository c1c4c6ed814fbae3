"""Shared pytest fixtures and options for the minires test suite."""

import numpy as np
import pytest

import minires.backend as backend

#: ``--device cuda-emulated``: device "cuda" is the CPU emulation of tests/cudaemu.
CUDA_EMULATED = "cuda-emulated"

TORCH_SKIP_REASON = (
    "PyTorch is not installed, so the cross-checks against it are skipped "
    "(install it with `pip install torch==2.13.0`; .ci/run does)"
)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")
    parser.addoption(
        "--device", action="store", default="cpu", choices=(*backend.DEVICES, CUDA_EMULATED),
        help="cuda: also run tests/test_gpu.py, which re-runs op, layer and model checks on "
             "CuPy arrays against their CPU twins (needs CuPy and a GPU); cuda-emulated: the "
             "same GPU tests with the .cu kernels compiled by g++ and run on the CPU "
             "(tests/cudaemu, docs/cuda-emulation.md; needs g++, refuses a real CuPy)",
    )


def pytest_configure(config):
    if config.getoption("--device") == CUDA_EMULATED:
        from tests import cudaemu

        try:
            cudaemu.install()
        except RuntimeError as err:
            raise pytest.UsageError(f"--device {CUDA_EMULATED}: {err}") from err


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


GPU_OPTION_REASON = (
    "GPU twin checks run with `python -m pytest --device cuda` on a machine with CuPy and "
    "an NVIDIA GPU, or on the CPU with `--device cuda-emulated` (needs g++)"
)


@pytest.fixture(scope="session")
def device(request):
    """The device chosen with ``--device`` (``"cpu"`` by default).

    With ``--device cuda`` it is ``"cuda"`` when CuPy can reach a GPU, and otherwise every
    test that uses it is skipped with the reason (CuPy missing, driver broken, no GPU).
    With ``--device cuda-emulated`` it is ``"cuda"``, run by the CPU emulation.
    """
    name = request.config.getoption("--device")
    if name == CUDA_EMULATED:  # installed by pytest_configure
        return backend.CUDA
    if name == backend.CUDA:
        try:
            backend.check_device(name)
        except RuntimeError as err:
            pytest.skip(f"--device cuda, but the GPU is unusable here: {err}")
    return name


@pytest.fixture
def cuda_device(device):
    """``"cuda"`` for tests that only make sense on the GPU; skipped (with how to run them)
    unless pytest runs with ``--device cuda`` (or ``cuda-emulated``)."""
    if device != backend.CUDA:
        pytest.skip(GPU_OPTION_REASON)
    return device


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
