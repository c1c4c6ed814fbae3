"""Module: the base class of layers and models, as ``torch.nn.Module``.

A Module keeps three kinds of attributes, registered simply by assigning them:

* :class:`~minires.nn.Parameter` s (learned weights, found by ``parameters()``),
* buffers (state that is saved but not learned, like BatchNorm's running mean), and
* child Modules (so a ResNet is a tree of blocks, each a tree of layers).

Names are dotted paths through that tree (``layer1.0.conv1.weight``), the same as
torchvision's, so a state dict maps one-to-one onto PyTorch's.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minires import backend
from minires.autograd import RemovableHandle, Tensor
from minires.nn.parameter import Parameter


class Module:
    """Base class: subclasses set their layers in ``__init__`` and implement ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called: add "
                f"super().__init__() at the start of {type(self).__name__}.__init__")
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):  # called only when normal lookup fails
        for registry in ("_parameters", "_buffers", "_modules"):
            members = self.__dict__.get(registry, {})
            if name in members:
                return members[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value) -> None:
        """Register saved, non-learned state (a Tensor, or None)."""
        if value is not None and not isinstance(value, Tensor):
            value = Tensor(value)
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        """Register a Parameter (or None, for an absent bias) under ``name``."""
        self.__dict__.pop(name, None)
        self._parameters[name] = value

    def add_module(self, name: str, module: Module | None) -> None:
        self._modules[name] = module

    # ------------------------------------------------------------------ running
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:  # a hook may replace the output, as in PyTorch
                output = result
        return output

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward of this module.

        Used to look inside a network (layer shapes in ``summary``, response statistics in
        the demonstrations).  Returns a handle whose ``remove()`` unregisters the hook.
        """
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def train(self, mode: bool = True) -> Module:
        """Training mode (batch statistics in BatchNorm, dropout on) for this tree."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode (running statistics, no dropout)."""
        return self.train(False)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for this module and all descendants, depth first."""
        stack = [(prefix, self)]
        while stack:  # iterative, so very deep nets (ResNet-1202) need no recursion
            name, module = stack.pop()
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        return ((name, m) for name, m in self._modules.items() if m is not None)

    def children(self):
        return (module for _, module in self.named_children())

    def _named_members(self, registry: str, recurse: bool):
        modules = self.named_modules() if recurse else [("", self)]
        seen = set()
        for module_name, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))  # a shared weight is listed once
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, recurse: bool = True):
        """(dotted name, Parameter) pairs, e.g. ('layer1.0.conv1.weight', ...)."""
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse))

    def named_buffers(self, recurse: bool = True):
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse: bool = True):
        return (b for _, b in self.named_buffers(recurse))

    def num_parameters(self) -> int:
        """Total number of learned scalars."""
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        """Clear every parameter's gradient."""
        for p in self.parameters():
            p.grad = None

    def apply(self, fn) -> Module:
        """Call ``fn(module)`` on every module of the tree (e.g. custom initialisation)."""
        for module in list(self.modules()):
            fn(module)
        return self

    # ------------------------------------------------------------------ devices
    def to(self, device=None, dtype=None) -> Module:
        """Move/cast every parameter and buffer in place (the same Parameter objects)."""
        for tensor in list(self.parameters()) + list(self.buffers()):
            data = tensor.data
            if device is not None:
                data = backend.to_device(data, device)
            if dtype is not None and backend.is_floating(data.dtype):
                data = data.astype(dtype)
            tensor.data = data
            if tensor.grad is not None:
                tensor.grad = None  # a gradient on the old device/dtype would be stale
        return self

    def cpu(self) -> Module:
        return self.to(backend.CPU)

    def cuda(self) -> Module:
        return self.to(backend.CUDA)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict:
        """Every parameter and buffer as a NumPy array, by dotted name (a copy)."""
        state = OrderedDict()
        for module_name, module in self.named_modules():
            for registry in (module._parameters, module._buffers):
                for name, value in registry.items():
                    if value is not None:
                        key = f"{module_name}.{name}" if module_name else name
                        state[key] = backend.to_numpy(value.data).copy()
        return state

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        With ``strict`` (the default) the keys must match exactly; a mismatch raises a
        KeyError listing the missing and the unexpected keys.  Shapes must always match.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        own = OrderedDict()
        for module_name, module in self.named_modules():
            for registry in (module._parameters, module._buffers):
                for name, value in registry.items():
                    if value is not None:
                        own[f"{module_name}.{name}" if module_name else name] = value
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing keys "
                           f"{missing}, unexpected keys {unexpected}")
        wrong_shapes = [f"{k}: checkpoint {tuple(np.shape(state_dict[k]))}, model {own[k].shape}"
                        for k in own if k in state_dict
                        and tuple(np.shape(state_dict[k])) != own[k].shape]
        if wrong_shapes:
            raise ValueError("load_state_dict: shape mismatch for " + "; ".join(wrong_shapes))
        for key, tensor in own.items():
            if key in state_dict:
                xp = backend.get_array_module(tensor.data)
                value = backend.to_device(np.asarray(backend.to_numpy(state_dict[key])),
                                          tensor.device)
                tensor.data = xp.asarray(value, dtype=tensor.dtype).copy()
        return missing, unexpected

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The settings shown inside this module's parentheses in ``repr``."""
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(module).replace("\n", "\n  ")
                 for name, module in self._modules.items()]
        if not lines:
            return f"{type(self).__name__}({self.extra_repr()})"
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
