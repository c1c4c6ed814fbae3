"""The exercise catalog: every module in this package is one exercise, found automatically.

To add an exercise, add ONE module here (e.g. ``relu_backward.py``) and its student stub
``tutorials/exercises/<STUB>``.  The module defines:

``NAME``      the name on the command line (``python -m minires check NAME``).
``TITLE``     one line for ``--list``.
``ORDER``     (optional, default 1000) position in ``--list``; the built-in ones use 10, 20...
``STUB``      the stub's file name in ``tutorials/exercises/``.
``FUNCTION``  the function the student writes (same signature in the stub).
``OUTPUTS``   (optional) names of the results, e.g. ``("grad_x", "grad_w")``; with more than
              one name the student returns a tuple in that order.
``reference(*args, **kwargs)``  the right answer, calling minires's own kernels.
``cases(rng)``  yields :class:`~minires.exercises.Case` objects: random inputs from the
              NumPy generator ``rng`` (fixed seed, so every run shows the same cases).  Cover
              several shapes and the edge cases (batch 1, stride 2, padding, odd sizes,
              ties); keep them small: students' loops are slow.  Mostly float64; add a
              float32 case to check that the dtype is kept.
``TOLERANCE`` (optional) ``{"float64": (rtol, atol), "float32": (rtol, atol)}``.
``gradchecks(rng)`` (optional, backward passes) yields
              :class:`~minires.exercises.GradCheck` objects: the student's gradients
              against central differences of the reference forward pass (small inputs:
              two forward passes per input element).
``diagnose(case, expected, got)`` (optional) called when a case fails, with the
              reference's and the student's raw results; returns a key of ``HINTS`` naming
              a typical mistake (e.g. ``"ties_last"``) or None.  Errors in it are ignored.
``HINTS``     ``{failure kind: text}``.  Kinds every exercise has (defaults in
              ``checker.GENERIC_HINTS``): ``not_implemented``, ``exception``, ``none``,
              ``count``, ``type``, ``shape``, ``dtype``, ``nan``, ``mismatch``,
              ``gradcheck``; plus the keys your ``diagnose`` returns.

Each module's docstring is for teachers; the stub's docstring is for students.
"""
