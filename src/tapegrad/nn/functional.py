"""Functional interface (``import tapegrad.nn.functional as F``), PyTorch's names.

Each function checks its arguments on the raw arrays before any kernel runs, then
applies the op's Function so the call is recorded on the tape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops import activation, elementwise as ew, loss as _loss
from ..ops.conv import Conv2d, conv_args
from ..ops.linalg import Linear
from ..ops.pool import MaxPool2d, pool_args
from ..ops.shape import Pad
from ..tensor import Tensor

IntOrPair = int | tuple[int, int]


def _t(x: Any, fn: str, name: str = "input") -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return Tensor(x)
    raise TypeError(f"{fn}: {name} must be a Tensor, got {type(x).__name__}")


def _opt(x: Any, fn: str, name: str) -> Tensor | None:
    return None if x is None else _t(x, fn, name)


def _raw(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else t.data


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrPair = 1,
           padding: IntOrPair | str = 0, dilation: IntOrPair = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation. input (N, C, H, W), weight (O, C/groups, kH, kW) -> (N, O, Ho, Wo)."""
    x, w, b = _t(input, "conv2d"), _t(weight, "conv2d", "weight"), _opt(bias, "conv2d", "bias")
    stride, padding, dilation, groups, extra = conv_args(
        "conv2d", x.data, w.data, _raw(b), stride, padding, dilation, groups)
    if any(extra):
        x = Pad.apply(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    return Conv2d.apply(x, w, b, stride=stride, padding=padding, dilation=dilation,
                        groups=groups)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1,
           padding: int | str = 0, dilation: int = 1, groups: int = 1) -> Tensor:
    """1-D cross-correlation. input (N, C, L), weight (O, C/groups, k) -> (N, O, Lo)."""
    x, w, b = _t(input, "conv1d"), _t(weight, "conv1d", "weight"), _opt(bias, "conv1d", "bias")
    stride, padding, dilation, groups, extra = conv_args(
        "conv1d", x.data, w.data, _raw(b), stride, padding, dilation, groups, nd=1)
    if extra[0]:
        x = Pad.apply(x, ((0, 0), (0, 0), (0, extra[0])))
    y = Conv2d.apply(x.unsqueeze(2), w.unsqueeze(2), b, stride=(1, stride[0]),
                     padding=(0, padding[0]), dilation=(1, dilation[0]), groups=groups)
    return y.squeeze(2)


def max_pool2d(input: Tensor, kernel_size: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0, dilation: IntOrPair = 1,
               ceil_mode: bool = False) -> Tensor:
    """Max over sliding windows. input (N, C, H, W) -> (N, C, Ho, Wo); stride defaults to kernel."""
    x = _t(input, "max_pool2d")
    kernel, stride, padding, dilation, out = pool_args(
        "max_pool2d", x.data, kernel_size, stride, padding, dilation, ceil_mode)
    return MaxPool2d.apply(x, kernel, stride, padding, dilation, out)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input (..., in) @ weight (out, in).T + bias (out,)."""
    return Linear.apply(_t(input, "linear"), _t(weight, "linear", "weight"),
                        _opt(bias, "linear", "bias"))


def relu(input: Tensor) -> Tensor:
    return ew.ReLU.apply(_t(input, "relu"))


def sigmoid(input: Tensor) -> Tensor:
    return ew.Sigmoid.apply(_t(input, "sigmoid"))


def tanh(input: Tensor) -> Tensor:
    return ew.Tanh.apply(_t(input, "tanh"))


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    return activation.Softmax.apply(_t(input, "softmax"), axis=dim)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    return activation.LogSoftmax.apply(_t(input, "log_softmax"), axis=dim)


def cross_entropy(input: Tensor, target: Tensor | np.ndarray, reduction: str = "mean",
                  label_smoothing: float = 0.0, ignore_index: int = -100) -> Tensor:
    """Log-softmax + NLL of logits (N, C) against int class indices (N,)."""
    target = target.data if isinstance(target, Tensor) else np.asarray(target)
    return _loss.CrossEntropy.apply(_t(input, "cross_entropy"), target, reduction=reduction,
                                    label_smoothing=label_smoothing, ignore_index=ignore_index)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return _loss.MSELoss.apply(_t(input, "mse_loss"), _t(target, "mse_loss", "target"),
                               reduction=reduction)
