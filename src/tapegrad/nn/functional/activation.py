"""Activations: relu, sigmoid, tanh, softmax, log_softmax."""

from __future__ import annotations

from ...ops import activation
from ...ops import elementwise as ew
from ...tensor import Tensor
from ._common import _t


def relu(input: Tensor) -> Tensor:
    return activation.ReLU.apply(_t(input, "relu"))


def sigmoid(input: Tensor) -> Tensor:
    return ew.Sigmoid.apply(_t(input, "sigmoid"))


def tanh(input: Tensor) -> Tensor:
    return ew.Tanh.apply(_t(input, "tanh"))


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    return activation.Softmax.apply(_t(input, "softmax"), axis=dim)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    return activation.LogSoftmax.apply(_t(input, "log_softmax"), axis=dim)
