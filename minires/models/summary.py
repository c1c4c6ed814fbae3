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
    call: int = 1  # 2 for a layer's second call in one forward pass (a BasicBlock's ReLU)


@dataclass
class StageSummary:
    """Rows of :class:`ModelSummary` grouped by the first ``depth`` parts of their names
    (``layer1`` at depth 1, ``layer1.0`` at depth 2): the group's module type (with what it
    holds), output shape (of its last call), leaf-layer calls, parameters and MACs."""

    name: str
    type: str
    output_shape: tuple
    calls: int
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
    module_types: dict = field(default_factory=dict)  # dotted name -> class name

    def _totals(self) -> list:
        return [f"input shape (per sample): {self.input_shape}",
                f"total params:     {self.total_params:,} ({self.total_params / 1e6:.2f}M)",
                f"trainable params: {self.trainable_params:,}",
                f"MACs per sample:  {self.macs:,} ({self.macs / 1e9:.3f} G multiply-adds)"]

    def _group_type(self, name: str) -> str:
        """``Sequential (3 BasicBlock)``: the module's class and its children's classes."""
        own = self.module_types.get(name, "")
        prefix = f"{name}." if name else ""
        children = [t for n, t in self.module_types.items()
                    if n.startswith(prefix) and n != name and "." not in n[len(prefix):]]
        if not children:
            return own
        counts = {t: children.count(t) for t in dict.fromkeys(children)}
        inside = ", ".join(f"{c} {t}" if c > 1 else t for t, c in counts.items())
        return f"{own} ({inside})"

    def stages(self, depth: int = 1) -> list:
        """The rows grouped by the first ``depth`` parts of their dotted names, in order of
        first call: a list of :class:`StageSummary` (params and MACs summed)."""
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int (1: one row per stage), got "
                             f"{depth!r}")
        groups: dict[str, list] = {}
        for row in self.layers:
            groups.setdefault(".".join(row.name.split(".")[:depth]), []).append(row)
        return [StageSummary(name, self._group_type(name), rows[-1].output_shape, len(rows),
                             sum(r.params for r in rows), sum(r.macs for r in rows))
                for name, rows in groups.items()]

    def compact_table(self, depth: int = 1) -> str:
        """One row per stage (see :meth:`stages`) with its share of the MACs, and totals."""
        stages = self.stages(depth)
        name_width = max([len("stage")] + [len(st.name) for st in stages])
        type_width = max([len("type")] + [len(st.type) for st in stages])
        header = (f"{'stage':<{name_width}}  {'type':<{type_width}}  {'output shape':<14}  "
                  f"{'calls':>6}  {'params':>11}  {'MACs':>15}  {'share':>6}")
        lines = [header, "-" * len(header)]
        for st in stages:
            share = st.macs / self.macs if self.macs else 0.0
            lines.append(f"{st.name:<{name_width}}  {st.type:<{type_width}}  "
                         f"{str(st.output_shape):<14}  {st.calls:>6}  {st.params:>11,}  "
                         f"{st.macs:>15,}  {share:>6.1%}")
        return "\n".join(lines + ["-" * len(header)] + self._totals())

    def table(self) -> str:
        """The rows and totals as aligned text (a layer's second call is marked
        ``[call 2]``)."""
        names = [row.name + (f" [call {row.call}]" if row.call > 1 else "")
                 for row in self.layers]
        name_width = max([len("layer")] + [len(name) for name in names])
        type_width = max([len("type")] + [len(row.type) for row in self.layers])
        header = (f"{'layer':<{name_width}}  {'type':<{type_width}}  {'output shape':<18}  "
                  f"{'params':>11}  {'MACs':>15}")
        lines = [header, "-" * len(header)]
        for name, row in zip(names, self.layers, strict=True):
            lines.append(f"{name:<{name_width}}  {row.type:<{type_width}}  "
                         f"{str(row.output_shape):<18}  "
                         f"{row.params:>11,}  {row.macs:>15,}")
        return "\n".join(lines + ["-" * len(header)] + self._totals())

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


def summary(model: Module, input_shape, print_fn=print, depth: int | None = None
            ) -> ModelSummary:
    """Print and return a table of ``model``'s layers for one input of ``input_shape``.

    Args:
        model: any Module.
        input_shape: the shape of one sample, (C, H, W) e.g. (3, 32, 32); a leading batch
            dimension (N, C, H, W) is accepted and ignored (a single sample is used).
        print_fn: called with the table's text; ``None`` prints nothing.
        depth: ``None`` prints every leaf layer's call (62 rows for ResNet-20); 1 prints
            one row per stage (conv1, bn1, relu, layer1, layer2, layer3, avgpool, fc), 2 one
            per block, ... (:meth:`ModelSummary.compact_table`).  The returned summary
            always holds every row.

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

    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be None (every layer) or a positive int, got {depth!r}")
    rows: list[LayerSummary] = []
    calls: dict[int, int] = {}

    def record(name):
        def hook(module, _inputs, output):
            calls[id(module)] = calls.get(id(module), 0) + 1
            # a layer called twice (a block's ReLU) owns its parameters once
            own = sum(p.size for p in module.parameters()) if calls[id(module)] == 1 else 0
            out_shape = tuple(output.shape[1:]) if output.ndim else ()
            rows.append(LayerSummary(name, type(module).__name__, out_shape, own,
                                     layer_macs(module, out_shape), calls[id(module)]))
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
        module_types={name: type(module).__name__ for name, module in model.named_modules()
                      if name},
    )
    if print_fn is not None:
        print_fn(result.table() if depth is None else result.compact_table(depth))
    return result


def count_parameters(model: Module) -> int:
    """Number of learned scalars (sum of every parameter's size), without a forward pass."""
    return sum(math.prod(p.shape) for p in model.parameters())
