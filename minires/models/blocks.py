"""Residual blocks and their relatives: the units that ResNets stack.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), section 3: instead
of asking a few stacked layers to fit a mapping H(x) directly, let them fit the *residual*
F(x) = H(x) - x and add x back through a shortcut:

    y = relu(F(x) + shortcut(x))                                          (paper eq. 1-2)

If the identity is (near) optimal, pushing F towards 0 is easier than making a stack of
nonlinear layers imitate the identity; and the shortcut carries the signal and its gradient
straight through any number of blocks (dy/dx = dF/dx + 1).

This file holds:

* :class:`BasicBlock`  two 3x3 convolutions (CIFAR ResNets, ResNet-18/34), and its *plain*
  twin (``residual=False``: the same layers without the shortcut);
* :class:`Bottleneck`  1x1-3x3-1x1 (ResNet-50/101/152, paper section 4.1 "Deeper Bottleneck
  Architectures");
* :class:`PreActBlock`  the pre-activation unit of He et al., "Identity Mappings in Deep
  Residual Networks" (ECCV 2016): nothing after the addition, so x passes untouched;
* :class:`HighwayBlock`  Srivastava et al., "Training Very Deep Networks" (2015): the
  shortcut is *gated*, y = H(x) T(x) + x (1 - T(x)), which the ResNet paper contrasts with
  its parameter-free identity shortcuts (section 2);
* :class:`PadShortcut`  option A's parameter-free shortcut for a change of shape.

Shortcut options (paper section 3.3 and the Table 3 experiment of section 4.1):

* ``"A"``  identity; where the shape changes (stride 2 and more channels) subsample
  ``x[:, :, ::2, ::2]`` and zero-pad the extra channels: no parameters (CIFAR, section 4.2);
* ``"B"``  a projection W_s x (1x1 convolution + BN) only where the shape changes, the
  identity elsewhere (torchvision's choice);
* ``"C"``  a projection on every block.

Names follow torchvision (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.0`` (the 1x1
convolution), ``downsample.1`` (its BN)), so state dicts map one-to-one onto PyTorch's.
Every block initialises its convolutions with He (Kaiming) normal, fan_out, as torchvision
does for the whole ResNet; BatchNorm starts at weight 1, bias 0.
"""

from __future__ import annotations

from minires import ops
from minires.autograd import no_grad
from minires.nn import init
from minires.nn.layers import BatchNorm2d, Conv2d, ReLU, Sequential
from minires.nn.module import Module

SHORTCUTS = ("A", "B", "C")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    """3x3 convolution, padding 1, no bias (BN follows): (N, in, H, W) -> (N, out, H/s, W/s).

    The output size is floor((H + 2 - 3) / s) + 1 = ceil(H / s), e.g. 7 -> 4 for s = 2.
    """
    return Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    """1x1 convolution, no bias: a per-pixel linear map of the channels (then subsampling
    by ``stride``): (N, in, H, W) -> (N, out, ceil(H/s), ceil(W/s))."""
    return Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def he_init_(conv: Conv2d) -> Conv2d:
    """He et al. 2015 initialisation, as torchvision's ResNet: W ~ N(0, 2 / fan_out) with
    fan_out = out_channels * KH * KW (keeps the variance of the backward signal)."""
    init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _check_shortcut(kind: str, allowed=SHORTCUTS) -> str:
    if kind not in allowed:
        raise ValueError(f"shortcut must be one of {allowed} (paper section 3.3: A = zero-pad "
                         f"identity, B = projection where the shape changes, C = projection "
                         f"everywhere), got {kind!r}")
    return kind


class PadShortcut(Module):
    """Option A's shortcut for a change of shape, with no parameters (paper section 3.3).

    y = x[:, :, ::s, ::s] followed by (out_planes - in_planes) channels of zeros:
    (N, in_planes, H, W) -> (N, out_planes, ceil(H/s), ceil(W/s)); the first in_planes
    channels carry x, the others are 0.  The output size matches ``conv3x3(stride=s)``'s,
    also for odd sizes (28 -> 14 -> 7 -> 4).

        x ──[::s, ::s]──[pad channels with 0]──> y

    Gradient: the subsampled positions of the first in_planes channels receive g; all
    others receive 0 (the zero channels are constants).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1):
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"option A pads channels with zeros and cannot reduce them: "
                             f"{in_planes} -> {out_planes}; use shortcut 'B'")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_planes - self.in_planes
        if extra:
            x = ops.pad(x, ((0, 0), (0, extra), (0, 0), (0, 0)))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


def make_shortcut(kind: str, in_planes: int, out_planes: int, stride: int = 1):
    """The shortcut module of a block, or None for the identity.

    The shape changes when ``stride != 1`` or ``in_planes != out_planes``.  Option A gives
    :class:`PadShortcut` there, option B ``Sequential(conv1x1(stride), BatchNorm2d)`` there
    (torchvision's ``downsample``), option C that projection on every block.
    """
    _check_shortcut(kind)
    reshapes = stride != 1 or in_planes != out_planes
    if kind == "A":
        return PadShortcut(in_planes, out_planes, stride) if reshapes else None
    if kind == "B" and not reshapes:
        return None
    return Sequential(he_init_(conv1x1(in_planes, out_planes, stride)), BatchNorm2d(out_planes))


class BasicBlock(Module):
    """The two-layer residual block (paper Fig. 2 left, Fig. 3 right, section 4.2).

    y = relu(F(x) + scale * shortcut(x)),  F(x) = BN(conv3x3(relu(BN(conv3x3_s(x)))))

        x ─┬─ conv3x3(s) ─ bn1 ─ relu ─ conv3x3 ─ bn2 ─(+)─ relu ─> y
           └──────────── shortcut (identity, A, B or C) ──┘

    With ``residual=False`` it is the *plain* block of the paper's plain nets (Fig. 3
    middle): y = relu(F(x)), the same layers minus the shortcut, so a plain net has exactly
    the parameters of its option-A ResNet twin.

    Shapes: (N, in_planes, H, W) -> (N, planes, ceil(H/stride), ceil(W/stride)).

    Args:
        in_planes, planes: input and output channels.
        stride: 2 at the first block of a stage (halves H and W).
        residual: add the shortcut (ResNet) or not (plain net).
        shortcut: "A", "B" or "C" (see the module docstring).
        zero_init_residual: bn2.weight = 0, so F(x) = 0 at the start and the block computes
            relu(x), the identity on the non-negative output of a previous block (Goyal et
            al. 2017; torchvision's ``zero_init_residual``).
        shortcut_scale: multiply the shortcut by a constant; He et al. 2016 (Identity
            Mappings, section 3.1, Table 1 "constant scaling") found 0.5 trains worse.

    Looking inside (paper Fig. 7, the std of layer responses): F(x) is bn2's output, named
    by ``response_layer``; record it with a hook, e.g.
    ``block.bn2.register_forward_hook(lambda m, inputs, out: stds.append(out.data.std()))``.
    """

    expansion = 1
    response_layer = "bn2"

    def __init__(self, in_planes: int, planes: int, stride: int = 1, residual: bool = True,
                 shortcut: str = "A", zero_init_residual: bool = False,
                 shortcut_scale: float = 1.0):
        super().__init__()
        _check_shortcut(shortcut)
        self.in_planes, self.planes, self.stride = in_planes, planes, stride
        self.residual, self.shortcut_type = residual, shortcut
        self.shortcut_scale = float(shortcut_scale)
        self.conv1 = he_init_(conv3x3(in_planes, planes, stride))
        self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU()
        self.conv2 = he_init_(conv3x3(planes, planes))
        self.bn2 = BatchNorm2d(planes)
        self.downsample = make_shortcut(shortcut, in_planes, planes, stride) if residual else None
        if zero_init_residual:
            init.zeros_(self.bn2.weight)

    @property
    def keeps_shape(self) -> bool:
        """True when output shape == input shape (the block could be deleted)."""
        return self.stride == 1 and self.in_planes == self.planes * self.expansion

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))  # F(x)
        if self.residual:
            identity = x if self.downsample is None else self.downsample(x)
            if self.shortcut_scale != 1.0:
                identity = identity * self.shortcut_scale
            out = out + identity
        return self.relu(out)

    def extra_repr(self) -> str:
        kind = f"shortcut={self.shortcut_type}" if self.residual else "plain"
        scale = f", shortcut_scale={self.shortcut_scale}" if self.shortcut_scale != 1.0 else ""
        return f"{self.in_planes}, {self.planes}, stride={self.stride}, {kind}{scale}"


class Bottleneck(Module):
    """The three-layer bottleneck block (paper Fig. 5 right, section 4.1), expansion 4.

    y = relu(F(x) + shortcut(x)),
    F(x) = BN(conv1x1_up(relu(BN(conv3x3_s(relu(BN(conv1x1_down(x))))))))

        x ─┬─ 1x1 ─ bn1 ─ relu ─ 3x3(s) ─ bn2 ─ relu ─ 1x1 (x4) ─ bn3 ─(+)─ relu ─> y
           └────────────────── shortcut (B: projection where shape changes) ┘

    The 1x1 layers reduce then restore the channels, so the 3x3 works on ``planes``
    channels while the block's input/output has ``4 * planes``.

    Stride: on the 3x3 convolution (torchvision's "ResNet v1.5" convention, slightly more
    accurate); the paper's original v1 puts it on the first 1x1, which then runs at the
    lower resolution and costs fewer multiply-adds (ResNet-50: 3.8 GMACs in the paper's
    Table 1 versus 4.1 GMACs for v1.5).  ``stride_in_1x1=True`` gives v1.

    Shapes: (N, in_planes, H, W) -> (N, 4 planes, ceil(H/stride), ceil(W/stride)).
    ``residual=False`` gives the plain twin; ``zero_init_residual`` sets bn3.weight = 0.
    """

    expansion = 4
    response_layer = "bn3"

    def __init__(self, in_planes: int, planes: int, stride: int = 1, residual: bool = True,
                 shortcut: str = "B", zero_init_residual: bool = False,
                 stride_in_1x1: bool = False):
        super().__init__()
        _check_shortcut(shortcut)
        out_planes = planes * self.expansion
        self.in_planes, self.planes, self.stride = in_planes, planes, stride
        self.residual, self.shortcut_type, self.stride_in_1x1 = residual, shortcut, stride_in_1x1
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = he_init_(conv1x1(in_planes, planes, stride_1x1))
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = he_init_(conv3x3(planes, planes, stride_3x3))
        self.bn2 = BatchNorm2d(planes)
        self.conv3 = he_init_(conv1x1(planes, out_planes))
        self.bn3 = BatchNorm2d(out_planes)
        self.relu = ReLU()
        self.downsample = (make_shortcut(shortcut, in_planes, out_planes, stride)
                           if residual else None)
        if zero_init_residual:
            init.zeros_(self.bn3.weight)

    @property
    def keeps_shape(self) -> bool:
        """True when output shape == input shape (the block could be deleted)."""
        return self.stride == 1 and self.in_planes == self.planes * self.expansion

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))  # F(x)
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def extra_repr(self) -> str:
        kind = f"shortcut={self.shortcut_type}" if self.residual else "plain"
        return f"{self.in_planes}, {self.planes}, stride={self.stride}, {kind}"


class PreActBlock(Module):
    """Pre-activation residual unit (He et al. 2016, "Identity Mappings in Deep Residual
    Networks", Fig. 1(b) and 4(e)): BN and ReLU move *before* each convolution and nothing
    follows the addition, so the shortcut path is a pure identity from block to block:

    y = x + F(x),  F(x) = conv3x3(relu(BN(conv3x3_s(relu(BN(x))))))

        x ─┬─ bn1 ─ relu ─┬─ conv3x3(s) ─ bn2 ─ relu ─ conv3x3 ─(+)─> y
           │              └─ (B: projection of the pre-activated x) ┤
           └──── identity (A: subsample + zero channels) ───────────┘

    x_L = x_l + sum_{i=l}^{L-1} F(x_i) for any deeper unit L (their eq. 4), and the
    gradient reaching x_l always contains the unattenuated dE/dx_L term.

    Shortcuts: "A" subsamples and zero-pads the raw x; "B" applies the 1x1 projection to
    the pre-activated relu(bn1(x)) where the shape changes (as the authors' code does), the
    raw identity elsewhere.  A network of these units needs a final BN-ReLU before pooling
    (:class:`~minires.models.CifarResNet` adds it).  ``residual=False`` drops the shortcut.

    Shapes: (N, in_planes, H, W) -> (N, planes, ceil(H/stride), ceil(W/stride)).
    F(x) is conv2's output (``response_layer``).
    """

    expansion = 1
    response_layer = "conv2"

    def __init__(self, in_planes: int, planes: int, stride: int = 1, residual: bool = True,
                 shortcut: str = "A"):
        super().__init__()
        _check_shortcut(shortcut, ("A", "B"))
        self.in_planes, self.planes, self.stride = in_planes, planes, stride
        self.residual, self.shortcut_type = residual, shortcut
        self.bn1 = BatchNorm2d(in_planes)
        self.conv1 = he_init_(conv3x3(in_planes, planes, stride))
        self.bn2 = BatchNorm2d(planes)
        self.conv2 = he_init_(conv3x3(planes, planes))
        self.relu = ReLU()
        self.downsample = make_shortcut(shortcut, in_planes, planes, stride) if residual else None

    @property
    def keeps_shape(self) -> bool:
        """True when output shape == input shape (the block could be deleted)."""
        return self.stride == 1 and self.in_planes == self.planes

    def forward(self, x):
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))  # F(x)
        if not self.residual:
            return out
        if self.downsample is None:
            return out + x
        return out + self.downsample(pre if self.shortcut_type == "B" else x)

    def extra_repr(self) -> str:
        kind = f"shortcut={self.shortcut_type}" if self.residual else "plain"
        return f"{self.in_planes}, {self.planes}, stride={self.stride}, {kind}"


class HighwayBlock(Module):
    """A convolutional highway block (Srivastava, Greff & Schmidhuber 2015): a learned gate
    T(x) in (0, 1) mixes a transform H(x) with the carried input:

    y = H(x) * T(x) + C(x) * (1 - T(x))
    H(x) = relu(BN(conv3x3(relu(BN(conv3x3_s(x))))))   (BasicBlock's body, then a ReLU)
    T(x) = sigmoid(conv3x3_s(x) + b_T)                  (the transform gate, per unit)
    C(x) = x, or option A's subsample + zero channels where the shape changes

        x ─┬─ conv ─ bn1 ─ relu ─ conv ─ bn2 ─ relu ── H ──(x T)──(+)─> y
           ├─ gate conv + b_T ─ sigmoid ── T ─────────────┘    │
           └─ carry C(x) ──────────────────────────(x (1 - T))─┘

    As in Srivastava et al., H includes its nonlinearity and nothing follows the mix.  The
    ResNet paper (section 2) contrasts this with its shortcuts: a highway's carry is gated
    and data-dependent, so when T -> 1 the block is a plain layer, while a residual
    shortcut is always fully open and has no parameters.

    Gate initialisation: b_T = ``gate_bias`` (negative, e.g. -2: T ~ 0.12, mostly carry at
    the start, "bridging long-term dependencies early in training" in Srivastava et al.) and
    the gate's weights start at 0, so every gate starts at exactly sigmoid(gate_bias); they
    still receive gradients (x is not 0) and learn from the first step.

    ``last_gate_mean`` holds the mean of T over the last forward's batch (a float, computed
    from the data without recording a graph), for reporting the gate per layer.

    Shapes: (N, in_planes, H, W) -> (N, planes, ceil(H/stride), ceil(W/stride)).
    """

    expansion = 1
    response_layer = "bn2"

    def __init__(self, in_planes: int, planes: int, stride: int = 1, gate_bias: float = -2.0):
        super().__init__()
        self.in_planes, self.planes, self.stride = in_planes, planes, stride
        self.gate_bias = float(gate_bias)
        self.conv1 = he_init_(conv3x3(in_planes, planes, stride))
        self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU()
        self.conv2 = he_init_(conv3x3(planes, planes))
        self.bn2 = BatchNorm2d(planes)
        self.gate = Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1,
                           bias=True)
        self.downsample = make_shortcut("A", in_planes, planes, stride)  # the carry path
        self.last_gate_mean: float | None = None
        self.reset_gate()

    def reset_gate(self) -> None:
        """Gate weights 0 and bias ``gate_bias``: T(x) = sigmoid(gate_bias) everywhere."""
        init.zeros_(self.gate.weight)
        init.constant_(self.gate.bias, self.gate_bias)

    @property
    def keeps_shape(self) -> bool:
        """True when output shape == input shape (the block could be deleted)."""
        return self.stride == 1 and self.in_planes == self.planes

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))  # H(x)
        t = self.gate(x).sigmoid()  # T(x)
        with no_grad():
            self.last_gate_mean = float(t.data.mean())
        carry = x if self.downsample is None else self.downsample(x)
        return h * t + carry * (1.0 - t)

    def extra_repr(self) -> str:
        return (f"{self.in_planes}, {self.planes}, stride={self.stride}, "
                f"gate_bias={self.gate_bias}")
