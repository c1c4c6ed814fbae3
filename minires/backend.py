"""Array backends: NumPy on the CPU, CuPy on an NVIDIA GPU.

Everything numerical in minires is written against an *array module* ``xp`` that is
either :mod:`numpy` or :mod:`cupy`; :func:`get_array_module` picks it from the arrays
themselves, so one kernel serves both devices.  This file also owns the default
floating-point dtype (float32, switchable to float64 for gradient checks) and the
random generators (one call, :func:`manual_seed`, seeds all of them).

CuPy is optional: it is imported only when a GPU is asked for.
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

CPU = "cpu"
CUDA = "cuda"
DEVICES = (CPU, CUDA)

_CUPY_INSTALL_HINT = (
    "install the CuPy wheel that matches your CUDA version, e.g. "
    "`pip install cupy-cuda12x` for CUDA 12 (or `pip install minires[gpu]`)"
)

_cupy = None  # the imported cupy module, once a GPU has been asked for


def _import_cupy():
    """Import CuPy lazily and check a GPU is usable; raise a clear error otherwise."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as err:
        raise RuntimeError(
            f"device 'cuda' needs CuPy, which is not installed: {_CUPY_INSTALL_HINT}"
        ) from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise RuntimeError(
            f"device 'cuda' asked for, but CuPy cannot reach a GPU ({err}); "
            "check `nvidia-smi` and that the CuPy wheel matches the CUDA driver"
        ) from err
    if count == 0:
        raise RuntimeError("device 'cuda' asked for, but no NVIDIA GPU is visible to CuPy")
    _cupy = cupy
    if _last_seed is not None:  # manual_seed ran before the GPU was first used
        cupy.random.seed(_last_seed)
    return cupy


def require_cupy():
    """The cupy module, imported on first use; a clear error when CuPy or a GPU is missing."""
    return _import_cupy()


def is_cuda_available() -> bool:
    """True when CuPy is installed and can see at least one GPU."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def _is_cupy_array(array) -> bool:
    # Checked by the type's module name, so NumPy-only installs never import CuPy.
    return type(array).__module__.startswith("cupy")


def get_array_module(*arrays):
    """Return the array module (numpy or cupy) that the given arrays live in.

    All arrays must be on the same device; ``None`` entries are ignored, so optional
    arguments such as a missing bias can be passed straight through.
    """
    devices = {device_of(a) for a in arrays if a is not None}
    if len(devices) > 1:
        raise RuntimeError(f"arrays on different devices in one operation: {sorted(devices)}")
    if devices == {CUDA}:
        return _import_cupy()
    return np


def device_of(array) -> str:
    """``'cuda'`` for a CuPy array, ``'cpu'`` for anything else (NumPy arrays, scalars)."""
    return CUDA if _is_cupy_array(array) else CPU


def check_device(device) -> str:
    """Normalise a device name (``'cpu'``, ``'cuda'``, ``'cuda:0'``) and validate it."""
    name = str(device).lower()
    if name.startswith("cuda"):
        name = CUDA
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    if name == CUDA:
        _import_cupy()  # raises with an install hint when unusable
    return name


def to_device(array, device):
    """Copy ``array`` to ``device`` (a no-op when it is already there)."""
    device = check_device(device)
    if device == device_of(array):
        return array
    if device == CUDA:
        return _import_cupy().asarray(array)
    return array.get()  # cupy -> numpy


def to_numpy(array) -> np.ndarray:
    """A NumPy array holding ``array``'s values (copied off the GPU if needed)."""
    if _is_cupy_array(array):
        return array.get()
    return np.asarray(array)


# ---------------------------------------------------------------------------- dtype

_default_dtype = np.dtype(np.float32)
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def get_default_dtype() -> np.dtype:
    """The dtype new floating-point tensors get: float32 unless changed."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the dtype new floating-point tensors get (float32 or float64; float16 allowed)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"default dtype must be a float dtype {_FLOAT_DTYPES}, got {dtype}")
    _default_dtype = dtype


@contextlib.contextmanager
def default_dtype(dtype):
    """Context manager: ``with default_dtype(np.float64): ...`` for gradient checks."""
    previous = get_default_dtype()
    set_default_dtype(dtype)
    try:
        yield
    finally:
        set_default_dtype(previous)


def is_floating(dtype) -> bool:
    """True for floating-point dtypes (the only ones that can carry gradients)."""
    return np.dtype(dtype).kind == "f"


# ---------------------------------------------------------------------------- random

_rng = np.random.default_rng(0)
_last_seed = None


def manual_seed(seed: int) -> None:
    """Seed every random generator minires uses: its NumPy generator and, if CuPy is
    already in use, CuPy's.  Weight initialisation, data shuffling, augmentation and
    dropout all draw from these, so one call makes a run reproducible."""
    global _rng, _last_seed
    _rng, _last_seed = np.random.default_rng(seed), seed
    if _cupy is not None:
        _cupy.random.seed(seed)


def rng() -> np.random.Generator:
    """minires's global NumPy random generator (re-created by :func:`manual_seed`)."""
    return _rng


def get_rng_state() -> dict:
    """The generator's state, for checkpoints (restore with :func:`set_rng_state`)."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state saved by :func:`get_rng_state`."""
    _rng.bit_generator.state = state


# ---------------------------------------------------------------------------- allocator


def keep_freed_memory(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 2**30) -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it (Linux).

    A training step frees and re-allocates the same large arrays every step.  By default
    glibc hands large blocks back to the operating system, so the next step's arrays are
    fresh pages that the kernel must fault in and zero.  This sets ``M_MMAP_THRESHOLD``
    (blocks below it come from the reusable heap; glibc's maximum is 32 MiB) and
    ``M_TRIM_THRESHOLD`` (free heap kept before trimming) with ``mallopt``, for the whole
    process.  Never called on import: the CLI, Trainer or a benchmark call it, and say so.
    Peak memory stays what the step needs; memory is kept at that peak between steps.

    Returns True when applied, False where there is no glibc (macOS, Windows, musl).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, int(mmap_threshold))
                and mallopt(m_trim_threshold, int(trim_threshold)))
