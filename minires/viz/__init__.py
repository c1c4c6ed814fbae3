"""Seeing the autograd engine at work: the graph, and a backward pass step by step.

``trace()`` records a backward pass (see :mod:`minires.viz.trace`).  Nothing here is
needed for training, and nothing optional (matplotlib, graphviz) is imported before use.
"""

# The graph view (to_dot, draw_graph) lives in minires/viz/graph.py; its exports go here.
from minires.viz.trace import Trace, TraceRecord, trace

__all__ = ["Trace", "TraceRecord", "trace"]
