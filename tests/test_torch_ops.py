"""Cross-check every tensor op with PyTorch: same float64 inputs, same random upstream
gradient, forward and all input gradients equal to 1e-10 relative.

Skipped (with the reason) when torch is not installed.  The cases come from
``test_ops.CASES``; ops whose minires spelling torch does not accept get a torch twin here.
"""

import pytest

from tests.test_ops import CASES, _make_inputs
from tests.torch_check import assert_matches_torch

TOLERANCE = 1e-10

# Torch spellings for cases whose minires lambda torch would not run as written.
TORCH_TWINS = {
    "clip": lambda a: a.clamp(-0.5, 0.5),
    "softmax": lambda a: a.softmax(dim=1),
    "sum_axis": lambda a: a.sum(dim=(0, 2)),
    "mean": lambda a: a.mean(dim=-1),
    "max": lambda a: a.amax(dim=1),
    "min_keepdims": lambda a: a.amin(dim=0, keepdim=True),
    "max_all": lambda a: a.amax(),
    "reshape": lambda a: a.reshape(3, -1),
    "expand": lambda a: a.expand(4, 2, 3),
    "getitem_int_array_repeats": lambda a: a[[0, 2, 0, 0]],
    "getitem_pairs": lambda a: a[list(range(3)), [1, 0, 1]],
    "concatenate": None,  # built below, needs the torch module
    "stack": None,
    "pad": None,
    "where": None,
    "T": lambda a: a.T,
}


def _torch_twin(torch, name, fn):
    special = {
        "concatenate": lambda a, b: torch.cat([a, b, a], dim=1),
        "stack": lambda a, b: torch.stack([a, b], dim=1),
        "pad": lambda a: torch.nn.functional.pad(a, (1, 2)),
        "where": lambda a, b: torch.where(a > 0, a, b),
    }
    if name in special:
        return special[name]
    return TORCH_TWINS.get(name) or fn


@pytest.mark.torch
@pytest.mark.parametrize("name, fn, reference, makers", CASES, ids=[c[0] for c in CASES])
def test_op_matches_torch(torch, name, fn, reference, makers):
    arrays = _make_inputs(makers, seed=2)
    assert_matches_torch(torch, fn, _torch_twin(torch, name, fn), arrays, name, TOLERANCE)
