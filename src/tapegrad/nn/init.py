"""Initialisers, with PyTorch's defaults for conv and linear layers."""

from __future__ import annotations

import math

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
