"""Neural-network layers (``tapegrad.nn``) and their functional forms (``nn.functional``).

One module per layer family: ``conv``, ``pooling``, ``linear``, ``activation`` ...
"""

from . import functional, init, utils
from .activation import (
    ELU,
    GELU,
    Flatten,
    Hardsigmoid,
    Hardswish,
    Identity,
    LeakyReLU,
    LogSoftmax,
    Mish,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .dropout import Dropout, Dropout2d, GaussianDropout
from .linear import Linear
from .loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .module import Module, ModuleDict, ModuleList, Parameter, Sequential
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm
from .pooling import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from .sparse import Embedding
from .upsample import Upsample

__all__ = [
    "Upsample",
    "AdaptiveMaxPool2d",
    "AvgPool1d",
    "BCELoss",
    "Embedding",
    "HuberLoss",
    "InstanceNorm2d",
    "KLDivLoss",
    "L1Loss",
    "MaxPool1d",
    "ModuleDict",
    "ModuleList",
    "SmoothL1Loss",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "MSELoss",
    "NLLLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout",
    "Dropout2d",
    "GaussianDropout",
    "GroupNorm",
    "LayerNorm",
    "Conv1d",
    "Conv2d",
    "ConvTranspose1d",
    "ConvTranspose2d",
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
    "ELU",
    "GELU",
    "Hardsigmoid",
    "Hardswish",
    "LeakyReLU",
    "LogSoftmax",
    "Mish",
    "PReLU",
    "SiLU",
    "Softmax",
    "Softplus",
    "functional",
    "init",
    "utils",
]
