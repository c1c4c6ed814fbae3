"""Seeing what autograd does: the recorded graph (:func:`to_dot`, :func:`draw_graph`).

(The backward-pass trace, ``minires.viz.trace``, is added by the engine work; a merge
combines the two export lists.)
"""

from minires.viz.graph import draw_graph, to_dot

__all__ = ["draw_graph", "to_dot"]
