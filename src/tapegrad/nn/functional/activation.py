"""Activations: relu, sigmoid, tanh, softmax, log_softmax."""

from __future__ import annotations

from ...ops import activation
from ...ops import elementwise as ew
from ...tensor import Tensor
from ._common import _t


def relu(input: Tensor) -> Tensor:
    """``max(x, 0)`` elementwise, through the ``relu`` kernel variants (one pass writes the
    output and a one-byte mask; the backward is one pass over the mask).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.

    Returns
    -------
    Tensor
        Same shape and dtype.

    Raises
    ------
    TypeError
        If ``input`` is not a Tensor or ndarray.
    """
    return activation.ReLU.apply(_t(input, "relu"))


def sigmoid(input: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))`` elementwise; same shape and dtype as ``input`` (a Tensor or ndarray).

    Raises
    ------
    TypeError
        If ``input`` is not a Tensor or ndarray.
    """
    return ew.Sigmoid.apply(_t(input, "sigmoid"))


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent elementwise; same shape and dtype as ``input`` (a Tensor or ndarray).

    Raises
    ------
    TypeError
        If ``input`` is not a Tensor or ndarray.
    """
    return ew.Tanh.apply(_t(input, "tanh"))


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``, computed stably (the maximum subtracted first).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    dim : int, default -1
        The dimension whose entries sum to 1.

    Returns
    -------
    Tensor
        Same shape and dtype.

    Raises
    ------
    ValueError
        If ``dim`` is out of range for the input's shape.
    TypeError
        If ``input`` is not a Tensor or ndarray.
    """
    return activation.Softmax.apply(_t(input, "softmax"), axis=dim)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    """``x - logsumexp(x)`` along ``dim``: the log of :func:`softmax`, without its underflow.

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    dim : int, default -1
        The dimension normalised over.

    Returns
    -------
    Tensor
        Same shape and dtype.

    Raises
    ------
    ValueError
        If ``dim`` is out of range for the input's shape.
    TypeError
        If ``input`` is not a Tensor or ndarray.
    """
    return activation.LogSoftmax.apply(_t(input, "log_softmax"), axis=dim)
