"""Fast twins of the teaching kernels: same arguments, same results (tested equal in
float64), organised for speed (batch chunks on both cores, reused buffers, layout tricks).
Read the teaching kernel in ``minires/kernels/`` first; ``benchmarks/README.md`` has the
measurements behind each choice.

* ``conv.py``: the convolution; ``norm.py``: BatchNorm; ``activation.py``: ReLU;
* ``parallel.py``: the one helper that runs their batch chunks on the kernel threads;
* ``workspace.py``: the scratch buffers they reuse from call to call.
"""
