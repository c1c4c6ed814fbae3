"""Saving and loading state dicts and checkpoints, atomically.

Nothing a user saved may be lost or half-written: every save writes a temporary file in
the same directory, flushes it to disk, then renames it over the target.  A rename within
one directory is atomic, so an interrupted save leaves the previous file intact.

Formats: a flat dict of arrays (a model's ``state_dict()``) goes to ``.npz``; anything
else (a training checkpoint with optimizer state, history, RNG state) is pickled after
moving every array to the CPU.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np

from minires import backend


def _to_host(obj):
    """A copy of ``obj`` with every CuPy array turned into a NumPy array."""
    if isinstance(obj, dict):
        return type(obj)((k, _to_host(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    if hasattr(obj, "dtype") and hasattr(obj, "shape"):
        return backend.to_numpy(obj)
    return obj


def _umask() -> int:
    current = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(current)
    return current


def atomic_write(path, write) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private (0600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _is_flat_array_dict(obj) -> bool:
    return isinstance(obj, dict) and all(
        isinstance(k, str) and hasattr(v, "shape") for k, v in obj.items())


def save(obj, path) -> Path:
    """Save a state dict (to ``.npz``) or any checkpoint object (pickled), atomically."""
    path = Path(path)
    if path.suffix == ".npz":
        if not _is_flat_array_dict(obj):
            raise TypeError(".npz files hold a flat {name: array} dict such as a "
                            "state_dict(); save other objects to a .pkl path")
        arrays = {k: backend.to_numpy(v) for k, v in obj.items()}
        return atomic_write(path, lambda f: np.savez(f, **arrays))
    return atomic_write(path, lambda f: pickle.dump(_to_host(obj), f, protocol=4))


def load(path):
    """Load what :func:`save` wrote: a dict of NumPy arrays for ``.npz``, else the object.

    Only load pickled checkpoints you created yourself: unpickling runs code.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path.resolve()}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    with open(path, "rb") as file:
        return pickle.load(file)
