"""One comparison used by every PyTorch cross-check: same inputs, same random upstream
gradient, forward and every input gradient equal to a relative tolerance."""

import numpy as np

import minires
from minires.gradcheck import compare_gradients


def assert_matches_torch(torch, fn, torch_fn, arrays, name, tolerance=1e-10, seed=3):
    """Run ``fn`` on minires tensors and ``torch_fn`` on torch tensors made from the same
    float64 ``arrays``; assert the outputs and all input gradients agree."""
    ours = [minires.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, out_torch = fn(*ours), torch_fn(*theirs)
    np.testing.assert_allclose(out.numpy(), out_torch.detach().numpy(), rtol=tolerance,
                               atol=1e-13, err_msg=f"{name}: forward differs")
    upstream = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(upstream)
    out_torch.backward(torch.tensor(upstream))
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        comparison = compare_gradients(a.grad.numpy(), b.grad.numpy(), f"{name} input {i}")
        assert comparison.relative_error < tolerance, str(comparison)
