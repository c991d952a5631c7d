"""Initialisers, with PyTorch's defaults for conv and linear layers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..creation import generator


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs per output unit: shape[1] * prod(kernel) for (out, in, *kernel) weights."""
    return int(shape[1] * np.prod(shape[2:])) if len(shape) > 1 else int(shape[0])


def kaiming_uniform(shape: tuple[int, ...], a: float = math.sqrt(5)) -> np.ndarray:
    """PyTorch's default for Conv/Linear weights: U(-b, b), b = gain * sqrt(3 / fan_in)."""
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / max(fan_in(shape), 1))
    return generator().uniform(-bound, bound, size=shape).astype(np.float32)


def bias_uniform(n: int, fan: int) -> np.ndarray:
    """PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan) if fan > 0 else 0
    return generator().uniform(-bound, bound, size=(n,)).astype(np.float32)


# --- PyTorch's nn.init: in-place initialisers of a Tensor ------------------------------

_LINEAR = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """PyTorch's recommended gain for ``nonlinearity`` (``relu``: sqrt(2), ``tanh``: 5/3, ...)."""
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _target(fn: str, tensor: Any) -> np.ndarray:
    data = getattr(tensor, "data", None)
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{fn}: expected a Tensor, got {type(tensor).__name__}")
    if data.dtype.kind != "f":
        raise TypeError(f"{fn}: expected a floating tensor, got {data.dtype}")
    return data


def _calculate_fan_in_and_fan_out(tensor: Any) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel), as PyTorch computes them."""
    shape = tuple(getattr(tensor, "shape", ()))
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need a tensor with at least 2 dimensions, got shape {shape}"
        )
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(fn: str, tensor: Any, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{fn}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    try:
        fi, fo = _calculate_fan_in_and_fan_out(tensor)
    except ValueError as e:
        raise ValueError(f"{fn}: {e}") from None
    return fi if mode == "fan_in" else fo


def _fill(data: np.ndarray, values: np.ndarray) -> Any:
    data[...] = values.astype(data.dtype, copy=False)


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0) -> Any:
    """Fill with U(a, b) from tapegrad's generator; returns the tensor."""
    data = _target("uniform_", tensor)
    _fill(data, generator().uniform(a, b, size=data.shape))
    return tensor


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0) -> Any:
    """Fill with N(mean, std^2); returns the tensor."""
    data = _target("normal_", tensor)
    if not std >= 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    _fill(data, generator().normal(mean, std, size=data.shape))
    return tensor


def trunc_normal_(
    tensor: Any, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
) -> Any:
    """Fill with N(mean, std^2) truncated to [a, b] (absolute bounds, as PyTorch)."""
    data = _target("trunc_normal_", tensor)
    if not std > 0 or not a < b:
        raise ValueError(f"trunc_normal_: needs std > 0 and a < b, got std={std}, a={a}, b={b}")
    # rejection sampling: redraw the values outside [a, b]
    gen = generator()
    vals = gen.normal(mean, std, size=data.shape)
    for _ in range(1000):
        bad = (vals < a) | (vals > b)
        if not bad.any():
            break
        vals[bad] = gen.normal(mean, std, size=int(bad.sum()))
    _fill(data, np.clip(vals, a, b))
    return tensor


def constant_(tensor: Any, val: float) -> Any:
    """Fill with ``val``; returns the tensor."""
    _target("constant_", tensor)[...] = val
    return tensor


def zeros_(tensor: Any) -> Any:
    """Fill with zeros; returns the tensor."""
    _target("zeros_", tensor)[...] = 0
    return tensor


def ones_(tensor: Any) -> Any:
    """Fill with ones; returns the tensor."""
    _target("ones_", tensor)[...] = 1
    return tensor


def xavier_uniform_(tensor: Any, gain: float = 1.0) -> Any:
    """Glorot uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    _target("xavier_uniform_", tensor)
    fi, fo = _fan("xavier_uniform_", tensor, "fan_in"), _fan("xavier_uniform_", tensor, "fan_out")
    bound = gain * math.sqrt(6.0 / (fi + fo))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Any, gain: float = 1.0) -> Any:
    """Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    _target("xavier_normal_", tensor)
    fi, fo = _fan("xavier_normal_", tensor, "fan_in"), _fan("xavier_normal_", tensor, "fan_out")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fi + fo)))


def kaiming_uniform_(
    tensor: Any, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Any:
    """He uniform: U(-b, b), b = gain * sqrt(3 / fan), gain from ``nonlinearity`` and ``a``."""
    _target("kaiming_uniform_", tensor)
    fan = _fan("kaiming_uniform_", tensor, mode)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / max(fan, 1))
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(
    tensor: Any, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Any:
    """He normal: N(0, std^2), std = gain / sqrt(fan), gain from ``nonlinearity`` and ``a``."""
    _target("kaiming_normal_", tensor)
    fan = _fan("kaiming_normal_", tensor, mode)
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(max(fan, 1)))


def orthogonal_(tensor: Any, gain: float = 1.0) -> Any:
    """A (semi-)orthogonal matrix over (shape[0], prod(shape[1:])), scaled by ``gain``.

    Rows (or columns, whichever are fewer) are orthonormal; QR of a Gaussian matrix with
    the signs of R's diagonal folded in, as PyTorch does.
    """
    data = _target("orthogonal_", tensor)
    if data.ndim < 2:
        raise ValueError(f"orthogonal_: needs at least 2 dimensions, got shape {data.shape}")
    rows = data.shape[0]
    cols = data.size // rows if rows else 0
    flat = generator().standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    _fill(data, (gain * q).reshape(data.shape))
    return tensor
