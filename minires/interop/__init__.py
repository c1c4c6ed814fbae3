"""Crossing to the tools used at work: PyTorch and ONNX.

    >>> from minires import interop, models
    >>> model = models.resnet20()
    >>> twin = interop.to_torch(model)                 # a torch.nn.Module, same state dict
    >>> interop.from_torch(twin, models.resnet20())    # and back, strictly by key and shape
    >>> interop.export_onnx(model, x, "resnet20.onnx")  # eval-mode graph, no torch needed

The state-dict keys are torchvision's, so weights move without renaming; saved with
``minires.save`` they are a ``.safetensors`` file that ``safetensors.torch.load_file``
reads as it is.  torch and onnx are imported only inside these functions; without them
the error says how to install them (``pip install 'minires[torch]'`` / ``'minires[onnx]'``).
"""

from minires.interop.onnx_export import export_onnx
from minires.interop.pytorch import from_torch, to_torch, torch_classes
from minires.interop.weights import model_for_state_dict

__all__ = ["to_torch", "from_torch", "torch_classes", "export_onnx", "model_for_state_dict"]
