"""CUDA emulation: minires's ``.cu`` kernels compiled by g++ and run on the CPU.

``python -m pytest --device cuda-emulated`` runs the GPU tests (tests/test_gpu.py,
tests/test_kernels_cuda.py) without a GPU: :func:`install` makes this package's CuPy
stand-in (:mod:`tests.cudaemu.array`, with ``RawModule``/``RawKernel`` from
:mod:`tests.cudaemu.kernels`) the array module minires uses for device ``"cuda"``, so that
``minires/kernels/cuda/gpu.py`` runs unmodified: its name expressions, argument lists and
launch shapes are what gets tested, on the exact ``.cu`` text.  What this can and cannot
catch is in docs/cuda-emulation.md.

It never shadows a real CuPy: nothing is registered under the name ``cupy`` (``import
cupy`` still finds the real one, or fails), and :func:`install` refuses to run where a real
CuPy is installed or already in use (use ``--device cuda`` there).
"""

from __future__ import annotations

import importlib.util
import sys

from tests.cudaemu import array, kernels

array.module.RawModule = kernels.RawModule
array.module.RawKernel = kernels.raw_kernel
module = array.module

__all__ = ["install", "installed", "module"]


def installed() -> bool:
    """True when minires's device ``"cuda"`` is the emulation."""
    from minires import backend

    return backend._cupy is module


def install() -> None:
    """Make device ``"cuda"`` the emulation, for this process.  RuntimeError (with what to
    do instead) where a real CuPy is installed or in use, or no C++ compiler is found."""
    from minires import backend

    if installed():
        return
    if backend._cupy is not None or importlib.util.find_spec("cupy") is not None:
        raise RuntimeError("the CUDA emulation does not run beside a real CuPy (it would mix "
                           "the two); on this machine use --device cuda")
    kernels.compiler()  # a clear error now rather than at the first kernel
    sys.modules.setdefault("cupyx", array.cupyx)  # minires.ops imports cupyx.scatter_add
    # The one seam: backend keeps the imported cupy module in _cupy; handing it the
    # stand-in changes nothing in minires (no module of it knows about the emulation).
    backend._cupy = module
    if backend._last_seed is not None:
        module.random.seed(backend._last_seed)
