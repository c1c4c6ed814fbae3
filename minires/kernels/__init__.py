"""Pure array kernels (no autograd): the forward and backward arithmetic of every layer.

``conv.py``, ``pool.py``, ``norm.py``, ``activation.py``, ``loss.py`` are the teaching
path: one screen per kernel, the formula in its docstring.  ``fast/`` holds the fast twins
(tested equal).  :func:`use` is the switch between them and the seam for a student's own
kernels::

    minires.kernels.use(fast=False)          # or MINIRES_KERNELS=simple in the environment
    with minires.kernels.use(im2col=my_im2col):
        ...                                  # every CPU convolution calls my_im2col
"""

from minires.kernels.routing import ENV_VAR, fast_enabled, use

__all__ = ["ENV_VAR", "fast_enabled", "use"]
