"""Functional interface (``import tapegrad.nn.functional as F``), PyTorch's names.

One module per op family; each function checks its arguments on the raw arrays before
any kernel runs, then applies the op's Function so the call is recorded on the tape.
"""

from .activation import log_softmax, relu, sigmoid, softmax, tanh
from .conv import conv1d, conv2d
from .linear import linear
from .loss import cross_entropy, mse_loss
from .pool import max_pool2d

__all__ = [
    "conv1d",
    "conv2d",
    "cross_entropy",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]
