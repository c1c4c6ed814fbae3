"""See the graph autograd recorded: DOT text for graphviz, or a matplotlib drawing.

Nodes are tensors (boxes: name, shape, dtype and, once backward has filled it, the norm of the
gradient ``|grad|``) and Functions (ellipses: the operation's class name).  Edges follow the
forward pass: input tensor -> Function -> output tensor.  The layout is by topological order:
a non-leaf tensor sits one level below the Function that made it, a Function one level below
its deepest input, and a leaf (an input or a parameter) just above its first use.

Intermediate tensors that nothing holds any more are drawn from the graph's edges (name,
shape, dtype; never a gradient).  Backward frees the graph (``Function`` drops its saved
values) unless called with ``retain_graph=True``; draw before backward, or backward with
``retain_graph=True`` to see the gradients on the graph.  Intermediate tensors show a
gradient only after ``retain_grad()`` (and while something still holds them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minires.autograd import Edge, Tensor

#: draw_graph refuses graphs larger than this (use to_dot and graphviz for those).
MAX_DRAWN_NODES = 120


@dataclass
class _Node:
    key: int
    kind: str  # "tensor" or "function"
    label: str
    role: str = ""  # tensors: "root", "leaf", "param" (a leaf requiring grad) or ""
    level: int = 0
    x: float = 0.0
    parents: list = field(default_factory=list)  # keys of the nodes with an edge into this


def _tensor_label(tensor: Tensor, names: dict) -> str:
    name = names.get(id(tensor)) or tensor.name or ""
    dtype = str(tensor.dtype)
    lines = ([name] if name else []) + [f"{tuple(tensor.shape)} {dtype}"]
    if tensor.grad is not None:
        grad = np.asarray(tensor.grad.numpy() if hasattr(tensor.grad, "numpy") else tensor.grad)
        lines.append(f"|grad| {float(np.linalg.norm(grad.astype(np.float64))):.3g}")
    return "\n".join(lines)


def _collect(root: Tensor, names: dict) -> dict:
    """The graph reachable from ``root`` as ``{key: _Node}`` (keys are object ids)."""
    if not isinstance(root, Tensor):
        raise TypeError(f"expected a minires Tensor (the output whose graph to show), got "
                        f"{type(root).__name__}")
    nodes: dict[int, _Node] = {}
    tensors: dict[int, Tensor] = {}

    def add_tensor(tensor: Tensor) -> int:
        key = id(tensor)
        if key not in nodes:
            role = "leaf" if tensor.creator is None else ""
            if role and tensor.requires_grad:
                role = "param"
            nodes[key] = _Node(key, "tensor", _tensor_label(tensor, names), role)
            tensors[key] = tensor
        return key

    def add_freed(edge: Edge) -> int:
        # An intermediate nothing holds any more is gone (its consumers keep only an
        # edge): drawn from what the edge recorded, one node per output of its creator.
        key = id(edge.creator.outputs[edge.output_index])
        if key not in nodes:
            label = "\n".join(([edge.name] if edge.name else []) + [f"{edge.shape} {edge.dtype}"])
            nodes[key] = _Node(key, "tensor", label, parents=[id(edge.creator)])
        return key

    add_tensor(root)
    nodes[id(root)].role = "root"
    stack = [root.creator] if root.creator is not None else []
    seen = set()
    while stack:
        function = stack.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        freed = getattr(function, "_freed", False) or not hasattr(function, "inputs")
        label = type(function).__name__ + (" (freed)" if freed else "")
        fnode = nodes.setdefault(id(function), _Node(id(function), "function", label))
        for ref in getattr(function, "outputs", []):
            output = ref()
            if output is not None:
                nodes[add_tensor(output)].parents.append(fnode.key)
        if freed:
            continue
        for source in function.inputs:
            tensor = source.tensor() if isinstance(source, Edge) else source
            fnode.parents.append(add_tensor(tensor) if tensor is not None
                                 else add_freed(source))
            if source.creator is not None:
                stack.append(source.creator)
    return nodes


def _mean_parent_x(nodes: dict, key: int, level: int) -> float:
    xs = [nodes[p].x for p in nodes[key].parents if nodes[p].level < level]
    return sum(xs) / len(xs) if xs else 0.0


def _layout(nodes: dict) -> int:
    """Set each node's level and x; return the number of levels."""
    children: dict[int, list] = {k: [] for k in nodes}
    for node in nodes.values():
        for parent in node.parents:
            children[parent].append(node.key)
    # Levels in topological order (Kahn), leaves placed afterwards.
    indegree = {k: len(n.parents) for k, n in nodes.items()}
    ready = [k for k, d in indegree.items() if d == 0]
    order = []
    while ready:
        key = ready.pop()
        order.append(key)
        for child in children[key]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    for key in order:
        node = nodes[key]
        node.level = max((nodes[p].level for p in node.parents), default=-1) + 1
    for key in order:  # a leaf sits just above its first consumer
        node = nodes[key]
        if not node.parents and children[key]:
            node.level = max(min(nodes[c].level for c in children[key]) - 1, 0)
    levels: dict[int, list] = {}
    for key in order:
        levels.setdefault(nodes[key].level, []).append(key)
    for level in sorted(levels):  # order each level by the mean position of its parents
        row = levels[level]
        row.sort(key=lambda key, lv=level: _mean_parent_x(nodes, key, lv))
        for i, key in enumerate(row):
            nodes[key].x = i - (len(row) - 1) / 2
    return max(levels, default=0) + 1


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_DOT_STYLE = {"root": "#f6c28b", "param": "#b7e4c7", "leaf": "#e9ecef", "": "#cfe2ff"}


def _names(params) -> dict:
    if params is None:
        return {}
    items = params.items() if hasattr(params, "items") else params
    return {id(t): name for name, t in items}


def to_dot(tensor: Tensor, params=None) -> str:
    """The graph that produced ``tensor`` as Graphviz DOT text (render it with
    ``dot -Tpng``, or the ``graphviz`` package; neither is needed to get the text).

    ``params``: optional ``{name: tensor}`` (e.g. ``dict(model.named_parameters())``) to
    label leaves that have no ``.name``.  Tensors are boxes (the output orange, leaves that
    require grad green), Functions ellipses; edges follow the forward pass.
    """
    nodes = _collect(tensor, _names(params))
    lines = ["digraph minires {", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10];']
    for node in nodes.values():
        if node.kind == "tensor":
            lines.append(f'  n{node.key} [shape=box, style="rounded,filled", '
                         f'fillcolor="{_DOT_STYLE[node.role]}", '
                         f'label="{_dot_escape(node.label)}"];')
        else:
            lines.append(f'  n{node.key} [shape=ellipse, style=filled, fillcolor="#dee2e6", '
                         f'label="{_dot_escape(node.label)}"];')
    for node in nodes.values():
        lines += [f"  n{parent} -> n{node.key};" for parent in node.parents]
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_graph(tensor: Tensor, path=None, params=None, ax=None):
    """Draw the graph that produced ``tensor`` with matplotlib (no graphviz needed).

    Levels run top (inputs, parameters) to bottom (``tensor``); readable up to about 40
    nodes.  ``path``: also save the figure there (PNG, SVG, PDF by extension).
    ``params``: as for :func:`to_dot`.  Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    nodes = _collect(tensor, _names(params))
    if len(nodes) > MAX_DRAWN_NODES:
        raise ValueError(f"the graph has {len(nodes)} nodes, more than draw_graph can show "
                         f"readably ({MAX_DRAWN_NODES}); use to_dot(tensor) and graphviz")
    n_levels = _layout(nodes)
    width = max(sum(1 for n in nodes.values() if n.level == lv) for lv in range(n_levels))
    x_step, y_step = 2.3, 1.0
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(3.0, width * x_step), max(2.0, n_levels * 0.8)))
    else:
        fig = ax.figure

    def place(node):
        return node.x * x_step, -node.level * y_step

    box_w, box_h = 1.9, 0.62
    for node in nodes.values():
        for parent in node.parents:
            (x0, y0), (x1, y1) = place(nodes[parent]), place(node)
            ax.annotate("", xy=(x1, y1 + box_h / 2), xytext=(x0, y0 - box_h / 2),
                        arrowprops={"arrowstyle": "-|>", "color": "#6c757d", "lw": 0.9,
                                    "shrinkA": 0, "shrinkB": 0})
    for node in nodes.values():
        x, y = place(node)
        lines = node.label.count("\n") + 1
        if node.kind == "tensor":
            h = 0.2 + 0.15 * lines
            ax.add_patch(FancyBboxPatch((x - box_w / 2, y - h / 2), box_w, h,
                                        boxstyle="round,pad=0.02,rounding_size=0.08",
                                        fc=_DOT_STYLE[node.role], ec="#495057", lw=0.8))
            ax.text(x, y, node.label, ha="center", va="center", fontsize=7.5)
        else:
            ax.text(x, y, node.label, ha="center", va="center", fontsize=8, weight="bold",
                    bbox={"boxstyle": "round,pad=0.35", "fc": "#dee2e6", "ec": "#495057",
                          "lw": 0.8})
    legend = [FancyBboxPatch((0, 0), 1, 1, fc=_DOT_STYLE[role], ec="#495057", label=text)
              for role, text in (("leaf", "input"), ("param", "requires grad (leaf)"),
                                 ("", "intermediate"), ("root", "output"))
              if role in {n.role for n in nodes.values() if n.kind == "tensor"}]
    ax.legend(handles=legend, loc="upper center", fontsize=7, frameon=False,
              bbox_to_anchor=(0.5, 0.0), ncol=2)
    xs = [place(n)[0] for n in nodes.values()]
    ax.set_xlim(min(xs) - box_w, max(xs) + box_w)
    ax.set_ylim(-(n_levels - 1) * y_step - 0.6, 0.6)
    ax.set_axis_off()
    ax.set_title(f"graph of {type(tensor.creator).__name__ if tensor.creator else 'a leaf'}"
                 f" output: {sum(n.kind == 'function' for n in nodes.values())} functions, "
                 f"{sum(n.kind == 'tensor' for n in nodes.values())} tensors", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
