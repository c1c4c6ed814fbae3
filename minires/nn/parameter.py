"""Parameter: a Tensor that a Module learns."""

from minires.autograd import Tensor


class Parameter(Tensor):
    """A leaf Tensor registered as a learnable weight when assigned to a Module attribute.

    It requires grad by default; optimizers update ``.data`` in place from ``.grad``.
    """

    def __init__(self, data, requires_grad: bool = True, name: str | None = None):
        super().__init__(data, requires_grad=requires_grad, name=name)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
