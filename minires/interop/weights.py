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


def model_for_state_dict(name: str, state: dict, width: int | None = None):
    """Build model ``name`` shaped to fit ``state`` and load it strictly; returns the model.

    The input channels and the first stage's width are read off ``conv1.weight`` (C_out,
    C_in, KH, KW), the number of classes off ``fc.weight`` (classes, features).  CIFAR
    models have stages (w, 2w, 4w); ``width`` (when given) must agree with the weights.
    Raises ValueError naming what does not fit (unknown name, missing or mismatched keys).
    """
    from minires import models
    from minires.interop.pytorch import from_torch

    for key in ("conv1.weight", "fc.weight"):
        if key not in state or np.ndim(state[key]) != (4 if key == "conv1.weight" else 2):
            raise ValueError(f"the weights hold no {key!r} of a ResNet, so they are not a "
                             f"minires/torchvision ResNet state dict (keys: "
                             f"{', '.join(list(state)[:5])}{', ...' if len(state) > 5 else ''})")
    found, in_channels = (int(n) for n in np.shape(state["conv1.weight"])[:2])
    settings = {"in_channels": in_channels, "num_classes": int(np.shape(state["fc.weight"])[0])}
    key = name.lower().replace("-", "")
    if key in models.IMAGENET_MODEL_NAMES:
        if width is not None:
            raise ValueError(f"{name} has torchvision's fixed widths; drop --width")
    elif key in models.MODEL_NAMES:
        if width is not None and width != found:
            raise ValueError(f"the weights have width {found} (conv1.weight "
                             f"{tuple(np.shape(state['conv1.weight']))}), not {width}")
        settings["widths"] = (found, 2 * found, 4 * found)
    model = models.get_model(name, **settings)  # an unknown name lists the known ones
    return from_torch(state, model)
