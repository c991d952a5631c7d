"""Activation and reshaping layers."""

from __future__ import annotations

import warnings

import numpy as np

from tapegrad.kernels import declarations
from tapegrad.kernels.pointwise import (
    EluCall,
    GeluCall,
    LeakyReluCall,
    PointwiseCall,
    SoftplusCall,
)

from . import functional as F
from .functional._common import check_inplace
from .module import Module, Parameter


class ReLU(Module):
    """``max(x, 0)`` elementwise (:func:`tapegrad.nn.functional.relu`); any shape, same shape
    out.

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility (``nn.ReLU(inplace=True)``); the output is always
        a new tensor.

    Raises
    ------
    TypeError
        If ``inplace`` is not a bool.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        check_inplace("ReLU", inplace)
        self.inplace = inplace

    def forward(self, x):
        """Apply ReLU to ``x`` (any shape, float32 or float64)."""
        return F.relu(x)


class Tanh(Module):
    """Hyperbolic tangent elementwise; any shape, same shape out."""

    def forward(self, x):
        """Apply tanh to ``x``."""
        return F.tanh(x)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` elementwise; any shape, same shape out."""

    def forward(self, x):
        """Apply the sigmoid to ``x``."""
        return F.sigmoid(x)


def _args(record: type[PointwiseCall], **kwargs) -> dict:
    """The layer's arguments checked by its op's declaration (the same checks as a call)."""
    return record.check_arguments(**kwargs)


class LeakyReLU(Module):
    """``x if x > 0 else negative_slope * x`` (:func:`tapegrad.nn.functional.leaky_relu`).

    Parameters
    ----------
    negative_slope : float, default 0.01
        The slope for ``x <= 0``.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the output is always a new tensor.

    Raises
    ------
    TypeError
        If ``negative_slope`` is not a real number or ``inplace`` not a bool.
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        args = _args(LeakyReluCall, negative_slope=negative_slope, inplace=inplace)
        self.negative_slope, self.inplace = args["negative_slope"], inplace

    def forward(self, x):
        """Apply LeakyReLU to ``x`` (any shape, float32 or float64)."""
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        """``negative_slope=...`` as in the repr."""
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """``x if x > 0 else alpha * (exp(x) - 1)`` (:func:`tapegrad.nn.functional.elu`).

    Parameters
    ----------
    alpha : float, default 1.0
        The scale of the negative part.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the output is always a new tensor.

    Raises
    ------
    TypeError
        If ``alpha`` is not a real number or ``inplace`` not a bool.
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = _args(EluCall, alpha=alpha, inplace=inplace)["alpha"], inplace

    def forward(self, x):
        """Apply ELU to ``x`` (any shape, float32 or float64)."""
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        """``alpha=...`` as in the repr."""
        return f"alpha={self.alpha}"


class GELU(Module):
    """Gaussian error linear unit (:func:`tapegrad.nn.functional.gelu`).

    Parameters
    ----------
    approximate : {"none", "tanh"}, default "none"
        The exact form or PyTorch's tanh approximation.

    Raises
    ------
    ValueError
        If ``approximate`` is not ``"none"`` or ``"tanh"``.
    TypeError
        If ``approximate`` is not a str.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = _args(GeluCall, approximate=approximate)["approximate"]

    def forward(self, x):
        """Apply GELU to ``x`` (any shape, float32 or float64)."""
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        """``approximate=...`` as in the repr."""
        return f"approximate={self.approximate!r}"


class _InplaceOnly(Module):
    """An activation whose only argument is ``inplace`` (accepted, the output is always a
    new tensor)."""

    _name = ""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        declarations()[self._name].check_arguments(inplace=inplace)
        self.inplace = inplace

    def forward(self, x):
        """Apply the activation to ``x`` (any shape, float32 or float64)."""
        return getattr(F, self._name)(x)


class SiLU(_InplaceOnly):
    """``x * sigmoid(x)`` (:func:`tapegrad.nn.functional.silu`); ``inplace`` accepted."""

    _name = "silu"


class Hardswish(_InplaceOnly):
    """``x * clamp(x + 3, 0, 6) / 6`` (:func:`tapegrad.nn.functional.hardswish`);
    ``inplace`` accepted."""

    _name = "hardswish"


class Hardsigmoid(_InplaceOnly):
    """``clamp(x + 3, 0, 6) / 6`` (:func:`tapegrad.nn.functional.hardsigmoid`); ``inplace``
    accepted."""

    _name = "hardsigmoid"


class Mish(_InplaceOnly):
    """``x * tanh(softplus(x))`` (:func:`tapegrad.nn.functional.mish`); ``inplace``
    accepted."""

    _name = "mish"


class Softplus(Module):
    """``log(1 + exp(beta * x)) / beta``, the identity where ``beta * x > threshold``
    (:func:`tapegrad.nn.functional.softplus`).

    Parameters
    ----------
    beta : float, default 1.0
    threshold : float, default 20.0

    Raises
    ------
    TypeError
        If ``beta`` or ``threshold`` is not a real number.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        args = _args(SoftplusCall, beta=beta, threshold=threshold)
        self.beta, self.threshold = args["beta"], args["threshold"]

    def forward(self, x):
        """Apply Softplus to ``x`` (any shape, float32 or float64)."""
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        """``beta=..., threshold=...`` as in the repr."""
        return f"beta={self.beta}, threshold={self.threshold}"


class PReLU(Module):
    """``x if x > 0 else a * x`` with a learnable slope ``a``
    (:func:`tapegrad.nn.functional.prelu`).

    Parameters
    ----------
    num_parameters : int, default 1
        1 (one slope for all channels) or the number of channels (dimension 1 of the input).
    init : float, default 0.25
        The slopes' initial value.
    dtype : numpy dtype, default float32
        The weight's dtype (the input's must match).

    Attributes
    ----------
    weight : Parameter
        Shape ``(num_parameters,)``.

    Raises
    ------
    ValueError
        If ``num_parameters`` is not positive.
    TypeError
        If ``num_parameters`` is not an int or ``init`` not a real number.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype=np.float32) -> None:
        super().__init__()
        from ..ops.checks import positive_int

        self.num_parameters = positive_int("PReLU", "num_parameters", num_parameters)
        if isinstance(init, bool) or not isinstance(init, (int, float, np.integer, np.floating)):
            raise TypeError(f"PReLU: init must be a real number, got {init!r}")
        self.weight = Parameter(np.full(self.num_parameters, init, dtype=dtype))

    def forward(self, x):
        """Apply PReLU to ``x``: ValueError if its channel count does not match."""
        return F.prelu(x, self.weight)

    def extra_repr(self) -> str:
        """``num_parameters=...`` as in the repr."""
        return f"num_parameters={self.num_parameters}"


def _softmax_dim(layer: str, dim, ndim: int) -> int:
    if dim is not None:
        return dim
    # PyTorch's legacy implicit choice for a layer built without dim, with its warning
    warnings.warn(
        f"{layer}: implicit dimension choice is deprecated; pass dim", UserWarning, stacklevel=3
    )
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """``exp(x) / sum(exp(x))`` along ``dim`` (:func:`tapegrad.nn.functional.softmax`).

    Parameters
    ----------
    dim : int or None, default None
        The dimension whose entries sum to 1; None picks PyTorch's legacy implicit
        dimension (0 for 0-, 1- and 3-D inputs, else 1) with a UserWarning.

    Raises
    ------
    TypeError
        If ``dim`` is neither an int nor None.
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and (not isinstance(dim, (int, np.integer)) or isinstance(dim, bool)):
            raise TypeError(f"Softmax: dim must be an int or None, got {dim!r}")
        self.dim = dim

    def forward(self, x):
        """Apply softmax along ``dim``; ValueError if it is out of range for ``x``."""
        return F.softmax(x, _softmax_dim("Softmax", self.dim, np.ndim(getattr(x, "data", x))))

    def extra_repr(self) -> str:
        """``dim=...`` as in the repr."""
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """``x - logsumexp(x)`` along ``dim`` (:func:`tapegrad.nn.functional.log_softmax`).

    Parameters
    ----------
    dim : int or None, default None
        As :class:`Softmax`'s.

    Raises
    ------
    TypeError
        If ``dim`` is neither an int nor None.
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and (not isinstance(dim, (int, np.integer)) or isinstance(dim, bool)):
            raise TypeError(f"LogSoftmax: dim must be an int or None, got {dim!r}")
        self.dim = dim

    def forward(self, x):
        """Apply log_softmax along ``dim``; ValueError if it is out of range for ``x``."""
        dim = _softmax_dim("LogSoftmax", self.dim, np.ndim(getattr(x, "data", x)))
        return F.log_softmax(x, dim)

    def extra_repr(self) -> str:
        """``dim=...`` as in the repr."""
        return f"dim={self.dim}"


class Identity(Module):
    """Returns its input unchanged (a placeholder layer)."""

    def forward(self, x):
        """Return ``x`` itself."""
        return x


class Flatten(Module):
    """Flatten dimensions ``start_dim`` to ``end_dim`` into one: (N, C, H, W) -> (N, C*H*W) with
    the defaults.

    Parameters
    ----------
    start_dim : int, default 1
        The first dimension merged (1 keeps the batch dimension).
    end_dim : int, default -1
        The last dimension merged.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        """Flatten ``x``; ValueError if the dimensions are out of range for its shape."""
        return x.flatten(self.start_dim, self.end_dim)
