"""Rebuilding a model around a saved state dict, for the export command and the DDP example.

Weights cross between tools as a flat {key: array} state dict in a ``.safetensors`` file
(``minires.save``; torchvision's keys, ``num_batches_tracked`` as int64), which
``safetensors.torch.load_file`` reads as it is; ``minires.serialization.load_state_dict``
reads it back (or the model entry of a ``minires train`` checkpoint).  What such a file
does not say is which model it belongs to: :func:`model_for_state_dict` builds the named
model with the input channels, widths and classes that the weights imply.
"""

from __future__ import annotations

import numpy as np


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
