"""Neural-network layers (``tapegrad.nn``) and their functional forms (``nn.functional``)."""

from . import functional, init
from .layers import Conv1d, Conv2d, Flatten, Identity, Linear, MaxPool2d, ReLU, Sigmoid, Tanh
from .module import Module, Parameter, Sequential

__all__ = [
    "Conv1d",
    "Conv2d",
    "Flatten",
    "Identity",
    "Linear",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "functional",
    "init",
]
