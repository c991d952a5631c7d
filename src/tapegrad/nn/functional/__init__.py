"""Functional interface (``import tapegrad.nn.functional as F``), PyTorch's names.

One module per op family; each function checks its arguments on the raw arrays before
any kernel runs, then applies the op's Function so the call is recorded on the tape.
"""

from .activation import (
    elu,
    gelu,
    hardsigmoid,
    hardswish,
    leaky_relu,
    log_softmax,
    mish,
    prelu,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
)
from .conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d
from .dropout import dropout, dropout2d, gaussian_dropout
from .fused import add_relu, batch_norm_relu, conv2d_relu, conv_transpose2d_relu
from .linear import linear
from .loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from .norm import batch_norm, group_norm, instance_norm, layer_norm
from .padding import pad
from .pool import (
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)
from .sparse import embedding
from .upsample import interpolate, upsample

__all__ = [
    "interpolate",
    "upsample",
    "pad",
    "adaptive_max_pool2d",
    "avg_pool1d",
    "binary_cross_entropy",
    "embedding",
    "huber_loss",
    "instance_norm",
    "kl_div",
    "l1_loss",
    "max_pool1d",
    "smooth_l1_loss",
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "batch_norm_relu",
    "add_relu",
    "conv2d_relu",
    "conv_transpose2d_relu",
    "dropout",
    "dropout2d",
    "gaussian_dropout",
    "group_norm",
    "layer_norm",
    "conv1d",
    "conv2d",
    "conv_transpose1d",
    "conv_transpose2d",
    "cross_entropy",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
    "elu",
    "gelu",
    "hardsigmoid",
    "hardswish",
    "leaky_relu",
    "mish",
    "prelu",
    "silu",
    "softplus",
]
