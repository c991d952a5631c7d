"""Devices: tapegrad runs on the CPU. ``tapegrad.device("cpu")`` exists so PyTorch scripts
that move data and models with ``.to(device)`` run unchanged; any other device is refused
with a clear error, and ``tapegrad.cuda.is_available()`` is False."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["device"]


class device:
    """A device name: only ``"cpu"`` (optionally ``"cpu:0"``) is accepted.

    Raises
    ------
    ValueError
        Any other device (``"cuda"``, ``"mps"``, ...): tapegrad has CPU kernels only.
    """

    def __init__(self, type: Any = "cpu", index: int | None = None) -> None:
        if isinstance(type, device):
            type, index = type.type, type.index
        name = str(type)
        kind, _, num = name.partition(":")
        if kind != "cpu":
            raise ValueError(
                f"tapegrad.device: tapegrad runs on the CPU only, got device {name!r} "
                "(use 'cpu'; tapegrad.cuda.is_available() is False)"
            )
        if num and not num.isdigit():
            raise ValueError(f"tapegrad.device: bad device index in {name!r}")
        self.type = "cpu"
        self.index = int(num) if num else index

    def __repr__(self) -> str:
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type='cpu'{idx})"

    def __str__(self) -> str:
        return "cpu" if self.index is None else f"cpu:{self.index}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except ValueError:
                return False
        return isinstance(other, device) and other.type == self.type

    def __hash__(self) -> int:
        return hash(self.type)


def _is_dtype(x: Any) -> bool:
    if x is None or isinstance(x, (device, bool)):
        return False
    if isinstance(x, str):
        try:
            np.dtype(x)
        except TypeError:
            return False
        return True
    try:
        np.dtype(x)
    except TypeError:
        return False
    return True


def _parse_to(fn: str, args: tuple, kwargs: dict) -> np.dtype | None:
    """The dtype that ``.to(...)`` asks for (or None), checking any device is the CPU.

    Accepts PyTorch's forms: ``to(dtype)``, ``to(device)``, ``to(device, dtype)``,
    ``to(tensor)`` (its dtype), and the keywords ``device``, ``dtype``, ``non_blocking``,
    ``copy``.
    """
    unknown = sorted(set(kwargs) - {"device", "dtype", "non_blocking", "copy", "memory_format"})
    if unknown:
        raise TypeError(f"{fn}: unexpected keyword arguments {unknown}")
    dtype = kwargs.get("dtype")
    dev = kwargs.get("device")
    rest = list(args)
    if len(rest) > 3:
        raise TypeError(f"{fn}: expected at most (device, dtype, non_blocking), got {len(rest)}")
    for a in rest:
        if hasattr(a, "data") and isinstance(a.data, np.ndarray):
            dtype = a.data.dtype  # to(other_tensor)
        elif isinstance(a, bool):
            continue  # non_blocking
        elif _is_dtype(a):
            dtype = a
        else:
            dev = a
    if dev is not None:
        try:
            device(dev)
        except ValueError:
            raise ValueError(
                f"{fn}: tapegrad runs on the CPU only, got device {str(dev)!r}"
            ) from None
    return None if dtype is None else np.dtype(dtype)
