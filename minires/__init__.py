"""minires: a from-scratch deep-learning framework for seeing why residual networks work.

``import minires`` needs only NumPy; CuPy, matplotlib, tqdm and torch are optional and
imported where they are used.  Names follow PyTorch so habits transfer both ways.
"""

from minires import functional, nn, ops, optim, viz
from minires.autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad
from minires.backend import (
    default_dtype,
    get_array_module,
    get_default_dtype,
    is_cuda_available,
    manual_seed,
    set_default_dtype,
)
from minires.gradcheck import gradcheck
from minires.ops import (
    abs,
    add,
    arange,
    broadcast_to,
    cat,
    clamp,
    clip,
    concatenate,
    div,
    exp,
    flatten,
    full,
    log,
    log_softmax,
    matmul,
    max,
    mean,
    min,
    mul,
    ones,
    ones_like,
    pad,
    permute,
    pow,
    rand,
    randn,
    relu,
    reshape,
    sigmoid,
    softmax,
    split,
    sqrt,
    stack,
    sub,
    sum,
    tanh,
    tensor,
    transpose,
    where,
    zeros,
    zeros_like,
)
from minires.serialization import load, save

float32 = "float32"
float64 = "float64"

__version__ = "0.1.0"

__all__ = [name for name in dir() if not name.startswith("_")]
