"""The deep MLP of the vanishing-gradient demonstration: its layers, the residual forward
pass, its initialisations, and the gradient norms of one pass."""

import numpy as np
import pytest

from minires import backend
from minires.experiments.mlp import MLP, gradient_norms


def test_mlp_structure_and_residual_forward():
    with backend.default_dtype(np.float64):
        model = MLP(4, 8, "tanh", "he", batchnorm=True, residual=True)
        assert len(model.linears) == 4 and len(model.acts) == 3 and len(model.norms) == 3
        assert all(float(np.abs(lin.bias.data).max()) == 0 for lin in model.linears)
        x = np.random.default_rng(0).normal(size=(16, 784))
        weight, signal, loss = gradient_norms(model, x, np.arange(16) % 10)
    assert weight.shape == (4,) and signal.shape == (3,)
    assert np.all(weight > 0) and np.isfinite(loss)
    with pytest.raises(ValueError, match="init"):
        MLP(3, 8, "relu", "orthogonal")


def test_mlp_initialisations_have_their_variance():
    with backend.default_dtype(np.float64):
        for init, variance in (("normal", lambda i, o: 1.0), ("xavier", lambda i, o: 2 / (i + o)),
                               ("he", lambda i, o: 2 / i)):
            backend.manual_seed(0)
            weight = MLP(3, 400, "relu", init).linears[1].weight.data  # 400 x 400
            assert weight.var() == pytest.approx(variance(400, 400), rel=0.02), init
    with pytest.raises(ValueError, match="at least 2"):
        MLP(1, 8)
