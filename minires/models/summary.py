"""``summary``: a table of a model's layers, output shapes, parameters and multiply-adds.

How it works: forward hooks (:meth:`Module.register_forward_hook`) on every *leaf* module
(one without children: Conv2d, BatchNorm2d, ReLU, ...) record each call's output shape
during one forward pass of a single zero-filled sample; the hooks are removed afterwards.

Multiply-accumulates (MACs) per sample, counted from the shapes:

* Conv2d:  C_out * OH * OW * (C_in / groups) * KH * KW  (every output value is a dot product
  of the C_in * KH * KW weights of its filter with an input patch);
* Linear:  in_features * out_features.

The paper's "FLOPs" (Table 1: 3.6e9 for ResNet-34, "multiply-adds") are these MACs.  Like
the paper, the count leaves out biases, BatchNorm, ReLU, pooling and the shortcut additions
(each O(activations), not O(activations x fan-in)): they are < 1% of a ResNet's arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from minires.autograd import Tensor, no_grad
from minires.nn.layers import Conv2d, Linear
from minires.nn.module import Module


@dataclass
class LayerSummary:
    """One leaf module's call: its dotted name, type, per-sample output shape, the
    parameters it owns (counted at its first call only) and its MACs per sample."""

    name: str
    type: str
    output_shape: tuple
    params: int
    macs: int


@dataclass
class ModelSummary:
    """What :func:`summary` measured: the per-layer rows and the totals (MACs per sample)."""

    layers: list = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    macs: int = 0
    input_shape: tuple = ()

    def table(self) -> str:
        """The rows and totals as aligned text."""
        name_width = max([len("layer")] + [len(row.name) for row in self.layers])
        type_width = max([len("type")] + [len(row.type) for row in self.layers])
        header = (f"{'layer':<{name_width}}  {'type':<{type_width}}  {'output shape':<18}  "
                  f"{'params':>11}  {'MACs':>15}")
        lines = [header, "-" * len(header)]
        for row in self.layers:
            lines.append(f"{row.name:<{name_width}}  {row.type:<{type_width}}  "
                         f"{str(row.output_shape):<18}  "
                         f"{row.params:>11,}  {row.macs:>15,}")
        lines += ["-" * len(header),
                  f"input shape (per sample): {self.input_shape}",
                  f"total params:     {self.total_params:,} ({self.total_params / 1e6:.2f}M)",
                  f"trainable params: {self.trainable_params:,}",
                  f"MACs per sample:  {self.macs:,} ({self.macs / 1e9:.3f} G multiply-adds)"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def layer_macs(module: Module, output_shape: tuple) -> int:
    """Multiply-accumulates per sample of one call of a leaf layer (0 for layers without a
    matrix product).  ``output_shape`` excludes the batch dimension.

    Conv2d: C_out OH OW (C_in / groups) KH KW; Linear: in * out (per output row).
    """
    outputs = int(np.prod(output_shape, dtype=np.int64))
    if isinstance(module, Conv2d):
        per_output = int(np.prod(module.weight.shape[1:], dtype=np.int64))  # C_in/g * KH * KW
        return outputs * per_output
    if isinstance(module, Linear):
        return outputs * module.in_features
    return 0


def summary(model: Module, input_shape, print_fn=print) -> ModelSummary:
    """Print and return a table of ``model``'s layers for one input of ``input_shape``.

    Args:
        model: any Module.
        input_shape: the shape of one sample, (C, H, W) e.g. (3, 32, 32); a leading batch
            dimension (N, C, H, W) is accepted and ignored (a single sample is used).
        print_fn: called with the table's text; ``None`` prints nothing.

    Runs one forward pass of a zero-filled (1, C, H, W) batch in eval mode under
    :func:`no_grad` (no graph, no change to BN's running statistics, no draw from the random
    generator), then restores every module's train/eval mode.

    Returns:
        A :class:`ModelSummary`: ``layers`` (name, type, output shape, params, MACs per
        sample), ``total_params``, ``trainable_params`` and ``macs`` (per sample; the
        paper's "FLOPs" are multiply-adds, and BN, ReLU and additions are not counted).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    params = list(model.parameters())
    first = params[0] if params else None
    dtype = first.dtype if first is not None else np.float32
    x = Tensor(np.zeros((1, *shape), dtype=dtype))
    if first is not None and first.device != x.device:
        x = x.to(first.device)

    rows: list[LayerSummary] = []
    counted: set[int] = set()

    def record(name):
        def hook(module, _inputs, output):
            own = 0
            if id(module) not in counted:  # a layer called twice (a shared ReLU) counts once
                counted.add(id(module))
                own = sum(p.size for p in module.parameters())
            out_shape = tuple(output.shape[1:]) if output.ndim else ()
            rows.append(LayerSummary(name, type(module).__name__, out_shape, own,
                                     layer_macs(module, out_shape)))
        return hook

    modes = [(module, module.training) for module in model.modules()]
    handles = [module.register_forward_hook(record(name or type(module).__name__))
               for name, module in model.named_modules()
               if not any(True for _ in module.children())]  # the leaves
    try:
        model.eval()
        with no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            object.__setattr__(module, "training", mode)

    result = ModelSummary(
        layers=rows,
        total_params=sum(p.size for p in params),
        trainable_params=sum(p.size for p in params if p.requires_grad),
        macs=sum(row.macs for row in rows),
        input_shape=shape,
    )
    if print_fn is not None:
        print_fn(result.table())
    return result


def count_parameters(model: Module) -> int:
    """Number of learned scalars (sum of every parameter's size), without a forward pass."""
    return sum(math.prod(p.shape) for p in model.parameters())
