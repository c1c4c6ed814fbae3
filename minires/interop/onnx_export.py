"""Export an eval-mode minires model as an ONNX graph, built with the ``onnx`` package alone.

Each minires module becomes a few ONNX nodes; the weights become initializers named by
their state-dict keys (``layer1.0.conv1.weight``).  The translation, module by module:

    Conv2d                 Conv (kernel_shape, strides, pads, dilations)
    Conv2d + BatchNorm2d   one Conv with the BN folded in (fold_batch_norm=True):
                             s = gamma / sqrt(running_var + eps)
                             W' = W * s (per output channel),  b' = (b - running_mean) s + beta
    BatchNorm2d (alone)    BatchNormalization (running statistics: eval mode)
    ReLU, Sigmoid, Tanh    Relu, Sigmoid, Tanh
    PadShortcut (option A) Slice (steps s on H, W) + Pad (zero channels at the end)
    shortcut B/C           the 1x1 Conv (+ folded BN) of ``downsample``
    MaxPool2d, AvgPool2d   MaxPool, AveragePool
    AdaptiveAvgPool2d      GlobalAveragePool, then Flatten
    Linear                 Gemm (transB = 1)
    residual addition      Add (Mul for a shortcut_scale); highway: h t + carry (1 - t)

The blocks (BasicBlock, Bottleneck, PreActBlock, HighwayBlock) and models (CifarResNet,
ResNet) are written out as their ``forward`` computes them.  Weights are stored as
float32, the dtype every ONNX runtime runs.  torch is not needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minires import backend, serialization
from minires.autograd import Tensor, no_grad
from minires.interop._imports import require
from minires.models.blocks import BasicBlock, Bottleneck, HighwayBlock, PadShortcut, PreActBlock
from minires.models.cifar import CifarResNet
from minires.models.imagenet import ResNet
from minires.nn import layers
from minires.nn.module import Module

MIN_OPSET = 13  # Slice with steps, Pad with a pads input, Gemm/BN in their current forms


def _host(param) -> np.ndarray:
    return np.asarray(backend.to_numpy(param.data), dtype=np.float64)


class _GraphBuilder:
    """Collects nodes and initializers; every emitted value gets a fresh, readable name."""

    def __init__(self, onnx, fold_batch_norm: bool):
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.fold = fold_batch_norm
        self.nodes, self.initializers, self.count = [], [], 0

    def constant(self, name: str, array) -> str:
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs, hint: str, **attributes) -> str:
        self.count += 1
        output = f"{hint}/{op}_{self.count}" if hint else f"{op}_{self.count}"
        self.nodes.append(self.helper.make_node(op, list(inputs), [output], name=output,
                                                **attributes))
        return output

    # ------------------------------------------------------------------ layers
    def conv(self, conv: layers.Conv2d, x: str, prefix: str, bn=None, bn_prefix="") -> str:
        """Conv, with ``bn`` (eval mode) folded into its weight and bias when given."""
        weight = _host(conv.weight)
        bias = _host(conv.bias) if conv.bias is not None else None
        names = [f"{prefix}.weight", f"{prefix}.bias"]
        if bn is not None:
            scale = self._bn_scale(bn, bn_prefix)
            shift = _host(bn.bias) if bn.bias is not None else 0.0
            mean = _host(bn.running_mean)
            weight = weight * scale[:, None, None, None]
            bias = ((0.0 if bias is None else bias) - mean) * scale + shift
            names = [f"{prefix}.weight+{bn_prefix}", f"{prefix}.bias+{bn_prefix}"]
        inputs = [x, self.constant(names[0], weight)]
        if bias is not None:
            inputs.append(self.constant(names[1], bias))
        (ph, pw), (sh, sw), (dh, dw) = conv.padding, conv.stride, conv.dilation
        return self.node("Conv", inputs, prefix, kernel_shape=list(conv.kernel_size),
                         strides=[sh, sw], pads=[ph, pw, ph, pw], dilations=[dh, dw])

    @staticmethod
    def _bn_scale(bn, prefix: str) -> np.ndarray:
        if not bn.track_running_stats:
            raise ValueError(f"export_onnx: {prefix} has no running statistics, so its eval "
                             "mode uses batch statistics, which ONNX inference cannot express")
        gamma = _host(bn.weight) if bn.weight is not None else 1.0
        return gamma / np.sqrt(_host(bn.running_var) + bn.eps)

    def conv_bn(self, conv, bn, x: str, conv_prefix: str, bn_prefix: str) -> str:
        if self.fold:
            return self.conv(conv, x, conv_prefix, bn, bn_prefix)
        return self.batch_norm(bn, self.conv(conv, x, conv_prefix), bn_prefix)

    def batch_norm(self, bn, x: str, prefix: str) -> str:
        self._bn_scale(bn, prefix)  # the running-statistics check
        c = bn.num_features
        gamma = _host(bn.weight) if bn.weight is not None else np.ones(c)
        beta = _host(bn.bias) if bn.bias is not None else np.zeros(c)
        inputs = [x] + [self.constant(f"{prefix}.{name}", value) for name, value in
                        (("weight", gamma), ("bias", beta), ("running_mean",
                         _host(bn.running_mean)), ("running_var", _host(bn.running_var)))]
        return self.node("BatchNormalization", inputs, prefix, epsilon=float(bn.eps))

    def pad_shortcut(self, module: PadShortcut, x: str, prefix: str) -> str:
        """Option A: Slice x[:, :, ::s, ::s], then Pad the channel axis with zeros."""
        if module.stride != 1:
            s = module.stride
            x = self.node("Slice", [x, self.constant(f"{prefix}.starts", np.array([0, 0])),
                                    self.constant(f"{prefix}.ends",
                                                  np.array([2**62, 2**62])),
                                    self.constant(f"{prefix}.axes", np.array([2, 3])),
                                    self.constant(f"{prefix}.steps", np.array([s, s]))],
                          prefix)
        extra = module.out_planes - module.in_planes
        if extra:
            pads = np.array([0, 0, 0, 0, 0, extra, 0, 0])  # begins of N,C,H,W then ends
            x = self.node("Pad", [x, self.constant(f"{prefix}.pads", pads)], prefix,
                          mode="constant")
        return x

    def linear(self, module: layers.Linear, x: str, prefix: str) -> str:
        inputs = [x, self.constant(f"{prefix}.weight", _host(module.weight))]
        if module.bias is not None:
            inputs.append(self.constant(f"{prefix}.bias", _host(module.bias)))
        return self.node("Gemm", inputs, prefix, transB=1)

    def pool(self, module, x: str, prefix: str) -> str:
        kernel, stride, padding = (_pair(v) for v in
                                   (module.kernel_size, module.stride, module.padding))
        attributes = dict(kernel_shape=list(kernel), strides=list(stride),
                          pads=[padding[0], padding[1], padding[0], padding[1]])
        if isinstance(module, layers.MaxPool2d):
            return self.node("MaxPool", [x], prefix, **attributes)
        return self.node("AveragePool", [x], prefix,
                         count_include_pad=int(module.count_include_pad), **attributes)

    def shortcut(self, block, x: str, prefix: str) -> str:
        return x if block.downsample is None else self.emit(block.downsample, x,
                                                            f"{prefix}.downsample")

    # ------------------------------------------------------------------ blocks
    def basic_block(self, b: BasicBlock, x: str, p: str) -> str:
        out = self.node("Relu", [self.conv_bn(b.conv1, b.bn1, x, f"{p}.conv1", f"{p}.bn1")], p)
        out = self.conv_bn(b.conv2, b.bn2, out, f"{p}.conv2", f"{p}.bn2")
        if b.residual:
            identity = self.shortcut(b, x, p)
            if b.shortcut_scale != 1.0:
                identity = self.node("Mul", [identity, self.constant(
                    f"{p}.shortcut_scale", np.array(b.shortcut_scale))], p)
            out = self.node("Add", [out, identity], p)
        return self.node("Relu", [out], p)

    def bottleneck(self, b: Bottleneck, x: str, p: str) -> str:
        out = self.node("Relu", [self.conv_bn(b.conv1, b.bn1, x, f"{p}.conv1", f"{p}.bn1")], p)
        out = self.node("Relu", [self.conv_bn(b.conv2, b.bn2, out, f"{p}.conv2",
                                              f"{p}.bn2")], p)
        out = self.conv_bn(b.conv3, b.bn3, out, f"{p}.conv3", f"{p}.bn3")
        if b.residual:
            out = self.node("Add", [out, self.shortcut(b, x, p)], p)
        return self.node("Relu", [out], p)

    def preact_block(self, b: PreActBlock, x: str, p: str) -> str:
        pre = self.node("Relu", [self.batch_norm(b.bn1, x, f"{p}.bn1")], p)
        out = self.node("Relu", [self.conv_bn(b.conv1, b.bn2, pre, f"{p}.conv1", f"{p}.bn2")],
                        p)
        out = self.conv(b.conv2, out, f"{p}.conv2")
        if not b.residual:
            return out
        source = pre if b.shortcut_type == "B" and b.downsample is not None else x
        return self.node("Add", [out, self.shortcut(b, source, p)], p)

    def highway_block(self, b: HighwayBlock, x: str, p: str) -> str:
        h = self.node("Relu", [self.conv_bn(b.conv1, b.bn1, x, f"{p}.conv1", f"{p}.bn1")], p)
        h = self.node("Relu", [self.conv_bn(b.conv2, b.bn2, h, f"{p}.conv2", f"{p}.bn2")], p)
        t = self.node("Sigmoid", [self.conv(b.gate, x, f"{p}.gate")], p)
        carry_gate = self.node("Sub", [self.constant(f"{p}.one", np.array(1.0)), t], p)
        carried = self.node("Mul", [self.shortcut(b, x, p), carry_gate], p)
        return self.node("Add", [self.node("Mul", [h, t], p), carried], p)

    def cifar_resnet(self, m: CifarResNet, x: str, p: str) -> str:
        if m.block_type == "preact":
            x = self.conv(m.conv1, x, _join(p, "conv1"))
        else:
            x = self.node("Relu", [self.conv_bn(m.conv1, m.bn1, x, _join(p, "conv1"),
                                                _join(p, "bn1"))], p)
        for stage in ("layer1", "layer2", "layer3"):
            x = self.emit(getattr(m, stage), x, _join(p, stage))
        if m.block_type == "preact":
            x = self.node("Relu", [self.batch_norm(m.bn_final, x, _join(p, "bn_final"))], p)
        return self.classifier(m, x, p)

    def resnet(self, m: ResNet, x: str, p: str) -> str:
        x = self.node("Relu", [self.conv_bn(m.conv1, m.bn1, x, _join(p, "conv1"),
                                            _join(p, "bn1"))], p)
        x = self.pool(m.maxpool, x, _join(p, "maxpool"))
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            x = self.emit(getattr(m, stage), x, _join(p, stage))
        return self.classifier(m, x, p)

    def classifier(self, m, x: str, p: str) -> str:
        x = self.node("GlobalAveragePool", [x], _join(p, "avgpool"))
        return self.linear(m.fc, self.node("Flatten", [x], p, axis=1), _join(p, "fc"))

    # ------------------------------------------------------------------ dispatch
    def emit(self, module, x: str, prefix: str) -> str:
        """ONNX nodes computing ``module(x)`` (eval mode); returns the output's name."""
        composite = {BasicBlock: self.basic_block, Bottleneck: self.bottleneck,
                     PreActBlock: self.preact_block, HighwayBlock: self.highway_block,
                     CifarResNet: self.cifar_resnet, ResNet: self.resnet,
                     PadShortcut: self.pad_shortcut, layers.Linear: self.linear,
                     layers.MaxPool2d: self.pool, layers.AvgPool2d: self.pool,
                     layers.Conv2d: self.conv, layers.BatchNorm2d: self.batch_norm}
        kind = type(module)
        if kind in composite:
            return composite[kind](module, x, prefix)
        elementwise = {layers.ReLU: "Relu", layers.Sigmoid: "Sigmoid", layers.Tanh: "Tanh"}
        if kind in elementwise:
            return self.node(elementwise[kind], [x], prefix)
        if kind in (layers.Identity, layers.Dropout):  # dropout is the identity in eval mode
            return x
        if kind is layers.AdaptiveAvgPool2d:
            return self.node("GlobalAveragePool", [x], prefix)
        if kind is layers.Flatten and module.end_dim == -1:
            return self.node("Flatten", [x], prefix, axis=module.start_dim)
        if kind is layers.Sequential:
            return self.sequential(module, x, prefix)
        raise TypeError(f"export_onnx: no ONNX translation for {prefix or 'the model'} "
                        f"({kind.__name__})")

    def sequential(self, module: layers.Sequential, x: str, prefix: str) -> str:
        children = list(module.named_children())
        index = 0
        while index < len(children):
            name, child = children[index]
            following = children[index + 1][1] if index + 1 < len(children) else None
            if type(child) is layers.Conv2d and type(following) is layers.BatchNorm2d:
                x = self.conv_bn(child, following, x, _join(prefix, name),
                                 _join(prefix, children[index + 1][0]))
                index += 2
            else:
                x = self.emit(child, x, _join(prefix, name))
                index += 1
        return x


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if np.ndim(value) == 0 else (int(value[0]), int(value[1]))


def build_onnx_model(model, example_input, opset: int = 17, fold_batch_norm: bool = True):
    """The ``onnx.ModelProto`` of ``model`` in eval mode (see :func:`export_onnx`)."""
    onnx = require("onnx", "minires.interop.export_onnx")
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an int from {MIN_OPSET} to {newest} (this onnx "
                         f"package's newest), got {opset!r}")
    if not isinstance(model, Module):
        raise TypeError(f"export_onnx expects a minires Module, got {type(model).__name__}")
    x = example_input.data if isinstance(example_input, Tensor) else example_input
    x = np.asarray(backend.to_numpy(x))
    if x.ndim != 4:
        raise ValueError(f"example_input must be a batch of images (N, C, H, W), got shape "
                         f"{x.shape}")
    modes = {name: m.training for name, m in model.named_modules()}
    model.eval()
    try:
        with no_grad():  # runs the model once: the input fits, and gives the output shape
            dtype = next((p.dtype for p in model.parameters()), np.float32)
            logits = model(Tensor(x.astype(dtype)))
        graph = _GraphBuilder(onnx, fold_batch_norm)
        output = graph.emit(model, "input", "")
    finally:
        for name, m in model.named_modules():
            object.__setattr__(m, "training", modes[name])
    graph.nodes.append(onnx.helper.make_node("Identity", [output], ["logits"], name="logits"))
    float32 = onnx.TensorProto.FLOAT
    inputs = [onnx.helper.make_tensor_value_info("input", float32, ["N", *x.shape[1:]])]
    outputs = [onnx.helper.make_tensor_value_info("logits", float32,
                                                  ["N", *logits.shape[1:]])]
    body = onnx.helper.make_graph(graph.nodes, type(model).__name__, inputs, outputs,
                                  graph.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(body, opset_imports=opsets, producer_name="minires",
                                   doc_string=f"minires {type(model).__name__}, eval mode")
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)  # older runtimes read it
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, example_input, path, opset: int = 17,
                fold_batch_norm: bool = True) -> Path:
    """Write ``model`` (evaluated in eval mode) to ``path`` as an ONNX file; returns the path.

    Args:
        model: a model of :mod:`minires.models` (or a Sequential of minires layers).
        example_input: an array or Tensor (N, C, H, W); fixes C, H and W of the graph's
            input ``"input"``, whose batch dimension ``"N"`` is free.  The output is
            ``"logits"`` (N, num_classes).
        path: the ``.onnx`` file, written atomically (a temporary file renamed over it).
        opset: the ONNX operator set (13 or newer; default 17).
        fold_batch_norm: fold each BatchNorm that follows a convolution into it (one Conv);
            False keeps them as BatchNormalization nodes.

    The graph is checked by ``onnx.checker`` (with shape inference) before it is written.
    The model's train/eval mode is restored afterwards.  Needs the ``onnx`` package only.
    """
    proto = build_onnx_model(model, example_input, opset, fold_batch_norm)
    data = proto.SerializeToString()
    return serialization.atomic_write(Path(path), lambda file: file.write(data))
