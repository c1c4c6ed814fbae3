"""The optional packages of :mod:`minires.interop`, imported when a function needs them.

``import minires`` works with NumPy alone; only calling ``to_torch`` (torch) or
``export_onnx`` (onnx) imports those packages, and a missing one becomes an ImportError
that says how to install it.
"""

from __future__ import annotations

import importlib

INSTALL_HINTS = {
    "torch": "pip install 'minires[torch]'  (or: pip install torch==2.13.0)",
    "onnx": "pip install 'minires[onnx]'  (or: pip install onnx)",
}


def require(package: str, what: str):
    """``import package`` or raise ImportError naming ``what`` needs it and how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as err:
        hint = INSTALL_HINTS.get(package, f"pip install {package}")
        raise ImportError(f"{what} needs the optional package {package!r}, which is not "
                          f"installed: {hint}") from err


def optional(package: str):
    """The module, or None when it is not installed (for extras such as torchvision)."""
    try:
        return importlib.import_module(package)
    except ImportError:
        return None
