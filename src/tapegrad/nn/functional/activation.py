"""Activations: relu, sigmoid, tanh, softmax, log_softmax, prelu, and the pointwise family
(leaky_relu, elu, gelu, silu, hardswish, hardsigmoid, softplus, mish)."""

from __future__ import annotations

from ...ops import activation
from ...ops import elementwise as ew
from ...tensor import Tensor
from ._common import _t, check_inplace


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``max(x, 0)`` elementwise, through the ``relu`` kernel variants (one pass writes the
    output and a one-byte mask; the backward is one pass over the mask).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the output is always a new tensor.

    Returns
    -------
    Tensor
        Same shape and dtype.

    Raises
    ------
    TypeError
        If ``input`` is not a Tensor or ndarray, or ``inplace`` not a bool.
    """
    check_inplace("relu", inplace)
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


# --- the pointwise family: one kernel pass each way (kernels/pointwise) -------------------


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``x if x > 0 else negative_slope * x`` elementwise (PyTorch's ``leaky_relu``).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    negative_slope : float, default 0.01
        The slope for ``x <= 0``; the gradient there is ``negative_slope``.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the result is always a new tensor (the input
        is left unchanged, so the tape stays valid).

    Returns
    -------
    Tensor
        Same shape and dtype; NaN stays NaN.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray, or an argument has the
        wrong type (the message names the function and the argument).
    """
    return activation.LeakyReLU.apply(
        _t(input, "leaky_relu"), negative_slope=negative_slope, inplace=inplace
    )


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x if x > 0 else alpha * (exp(x) - 1)`` elementwise (PyTorch's ``elu``).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    alpha : float, default 1.0
        The scale of the negative part.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the result is always a new tensor.

    Returns
    -------
    Tensor
        Same shape and dtype.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray, or an argument has the
        wrong type (the message names the function and the argument).
    """
    return activation.ELU.apply(_t(input, "elu"), alpha=alpha, inplace=inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit ``x * Phi(x)`` elementwise (PyTorch's ``gelu``).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    approximate : {"none", "tanh"}, default "none"
        ``"none"``: the exact ``x * (1 + erf(x / sqrt(2))) / 2``; ``"tanh"``:
        ``x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) / 2``.

    Returns
    -------
    Tensor
        Same shape and dtype. ``gelu(+inf)`` is ``+inf`` (PyTorch's float32 vectorised
        path gives NaN there; its float64 path gives ``+inf``).

    Raises
    ------
    ValueError
        If ``approximate`` is not ``"none"`` or ``"tanh"``.
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray, or ``approximate`` is not
        a str.
    """
    return activation.GELU.apply(_t(input, "gelu"), approximate=approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * sigmoid(x)`` elementwise (PyTorch's ``silu``, also called swish).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the result is always a new tensor.

    Returns
    -------
    Tensor
        Same shape and dtype.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray, or an argument has the
        wrong type (the message names the function and the argument).
    """
    return activation.SiLU.apply(_t(input, "silu"), inplace=inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * clamp(x + 3, 0, 6) / 6`` elementwise (PyTorch's ``hardswish``).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the result is always a new tensor.

    Returns
    -------
    Tensor
        Same shape and dtype. The gradient is 0 at and below -3 and 1 from 3 on, as
        PyTorch's.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray, or an argument has the
        wrong type (the message names the function and the argument).
    """
    return activation.Hardswish.apply(_t(input, "hardswish"), inplace=inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """``clamp(x + 3, 0, 6) / 6`` elementwise (PyTorch's ``hardsigmoid``).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the result is always a new tensor.

    Returns
    -------
    Tensor
        Same shape and dtype; the gradient is 1/6 strictly between -3 and 3, else 0.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray, or an argument has the
        wrong type (the message names the function and the argument).
    """
    return activation.Hardsigmoid.apply(_t(input, "hardsigmoid"), inplace=inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta * x)) / beta`` elementwise, and ``x`` itself where
    ``beta * x > threshold`` (PyTorch's ``softplus``).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    beta : float, default 1.0
        The sharpness.
    threshold : float, default 20.0
        Above ``beta * x > threshold`` the function is the identity.

    Returns
    -------
    Tensor
        Same shape and dtype.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray, or an argument has the
        wrong type (the message names the function and the argument).
    """
    return activation.Softplus.apply(_t(input, "softplus"), beta=beta, threshold=threshold)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * tanh(softplus(x))`` elementwise (PyTorch's ``mish``).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the result is always a new tensor.

    Returns
    -------
    Tensor
        Same shape and dtype.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray, or an argument has the
        wrong type (the message names the function and the argument).
    """
    return activation.Mish.apply(_t(input, "mish"), inplace=inplace)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """``x if x > 0 else weight * x`` with a learnable slope (PyTorch's ``prelu``).

    Parameters
    ----------
    input : Tensor or ndarray
        Any shape, float32 or float64; dimension 1 is the channel dimension.
    weight : Tensor or ndarray
        Shape ``(1,)`` (one slope for all) or ``(C,)`` with ``C = input.shape[1]``; the
        input's dtype.

    Returns
    -------
    Tensor
        Same shape and dtype as ``input``.

    Raises
    ------
    ValueError
        If ``weight`` has neither 1 nor ``C`` elements, or more than one dimension.
    TypeError
        If ``input`` or ``weight`` is not a float32/float64 Tensor or ndarray, or their
        dtypes differ.
    """
    return activation.PReLU.apply(_t(input, "prelu"), _t(weight, "prelu", "weight"))
