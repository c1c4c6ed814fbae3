"""Reading and writing the weight files that cross to other tools: safetensors state dicts.

One seam, so that interop, its CLI command and the DDP example read and write weights the
same way: a flat {key: array} state dict in a ``.safetensors`` file (torchvision's keys,
``num_batches_tracked`` as int64), which ``safetensors.torch.load_file`` reads as it is.
Nothing here unpickles anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minires import backend, serialization


def read_state_dict(path) -> dict:
    """The flat model state dict {key: NumPy array} stored in ``path``.

    ``path``: a state dict saved by ``minires.save`` or a training checkpoint written by
    ``minires train`` (``checkpoint.safetensors``).  Raises FileNotFoundError for a missing
    file and ValueError for a file that holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: expected a .safetensors state dict or training checkpoint "
                         f"(minires never loads pickles), got a {path.suffix or 'suffix-less'} "
                         "file")
    if hasattr(serialization, "load_state_dict"):
        return dict(serialization.load_state_dict(path))
    from safetensors.numpy import load_file  # until minires.serialization reads safetensors

    try:
        return dict(load_file(str(path)))
    except Exception as err:  # safetensors raises its own error types for a corrupt file
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def write_state_dict(state: dict, path) -> Path:
    """Save a flat {key: array} state dict to ``path`` (``.safetensors``), atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"state dicts are saved as .safetensors, got {path}")
    arrays = {str(k): np.array(backend.to_numpy(v), order="C") for k, v in state.items()}
    if hasattr(serialization, "save") and "safetensors" in (serialization.save.__doc__ or ""):
        return serialization.save(arrays, path)
    from safetensors.numpy import save

    return serialization.atomic_write(path, lambda file: file.write(save(arrays)))
