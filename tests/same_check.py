"""Deep equality down to the types, for round-trip tests of saved objects."""

import numpy as np


def assert_same(a, b, where="obj"):
    """``a`` and ``b`` are equal down to the types: tuples stay tuples, ints stay ints,
    arrays keep dtype and shape, NumPy scalars keep their dtype."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), \
        f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray) or isinstance(a, np.generic):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert type(key) is type(next(k for k in b if k == key)), f"{where}: key {key!r}"
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
