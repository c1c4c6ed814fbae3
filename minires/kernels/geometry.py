"""Sliding-window geometry shared by convolution and pooling: one definition of each rule.

A 2-D window of ``kernel`` pixels (dilated by ``dilation``: taps ``dilation`` pixels apart)
moves ``stride`` pixels at a time over an input of ``size`` pixels zero-padded by
``padding`` on each side.  Along one axis it fits at::

    out = floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1

positions.  ``dilation*(kernel - 1) + 1`` is the window's span; with ``dilation = 1`` the
formula is pooling's ``floor((size + 2*padding - kernel) / stride) + 1``.
"""

from __future__ import annotations

import numbers


def is_int(value) -> bool:
    """True for Python and NumPy integers (``bool`` excluded: ``True`` is no kernel size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pair(value, name: str, minimum: int | None = None, where: str = "") -> tuple[int, int]:
    """An int or an ``(h, w)`` pair of ints -> ``(h, w)``: ``3 -> (3, 3)``, ``(2, 3) -> (2, 3)``.

    Args:
        value: the argument as the user gave it.
        name: its name, for the error message (``"stride"``).
        minimum: if given, both entries must be ``>= minimum`` (ValueError otherwise).
        where: the operation's name, prefixed to error messages (``"conv2d"``).

    Raises:
        TypeError: ``value`` is neither an int nor a pair of ints.
        ValueError: an entry is below ``minimum``.
    """
    prefix = f"{where}: " if where else ""
    values = (value, value) if is_int(value) else (
        tuple(value) if isinstance(value, (tuple, list)) else ())
    if len(values) != 2 or not all(is_int(v) for v in values):
        raise TypeError(f"{prefix}{name} must be an int or a pair of ints (h, w), got {value!r}")
    if minimum is not None and min(values) < minimum:
        raise ValueError(f"{prefix}{name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                where: str = "conv2d") -> int:
    """Number of window positions along one axis (formula in the module docstring).

    Raises ValueError when an argument is out of range or the (dilated) window is larger
    than the padded input; the message names both sizes.
    """
    if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise ValueError(f"{where}: need kernel, stride, dilation >= 1 and padding >= 0, got "
                         f"kernel={kernel}, stride={stride}, dilation={dilation}, "
                         f"padding={padding}")
    span = dilation * (kernel - 1) + 1
    padded = size + 2 * padding
    if padded < span:
        raise ValueError(
            f"{where}: window of size {kernel} (span {span} with dilation {dilation}) does not "
            f"fit: it is larger than the padded input of size {padded} ({size} + 2*{padding})")
    return (padded - span) // stride + 1


def output_hw(h: int, w: int, kernel: tuple, stride: tuple, padding: tuple,
              dilation: tuple = (1, 1), where: str = "conv2d") -> tuple[int, int]:
    """:func:`output_size` along H and along W; every argument after ``w`` is an (h, w) pair."""
    return (output_size(h, kernel[0], stride[0], padding[0], dilation[0], where),
            output_size(w, kernel[1], stride[1], padding[1], dilation[1], where))
