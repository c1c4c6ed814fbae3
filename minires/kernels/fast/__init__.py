"""Fast twins of the teaching kernels: same arguments, same results (tested equal in
float64), organised for speed (batch chunks, reused buffers, layout tricks).  Read the
teaching kernel in ``minires/kernels/`` first; ``benchmarks/README.md`` has the measurements
behind each choice."""
