"""Seeing the autograd engine at work: the recorded graph and a backward pass step by step.

* :func:`to_dot`, :func:`draw_graph`: the graph of a tensor (:mod:`minires.viz.graph`);
* :func:`trace`: which Function ran when in backward, and the norms of its gradients
  (:mod:`minires.viz.trace`).

Nothing here is needed for training, and nothing optional (matplotlib, graphviz) is
imported before use.
"""

from minires.viz.graph import draw_graph, to_dot
from minires.viz.trace import Trace, TraceRecord, trace

__all__ = ["Trace", "TraceRecord", "draw_graph", "to_dot", "trace"]
