"""Layers and models' building blocks, as ``torch.nn``."""

from minires.nn import init
from minires.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from minires.nn.module import Module
from minires.nn.parameter import Parameter
