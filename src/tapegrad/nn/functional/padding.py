"""Padding: ``F.pad`` (constant, reflect, replicate, circular), PyTorch's argument order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...ops import shape as _shape
from ...ops import tensor_ops as T
from ...tensor import Tensor
from ._common import _t

_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad(
    input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> Tensor:
    """Pad the last ``len(pad) // 2`` dimensions: ``pad = (left, right, top, bottom, ...)``
    starting from the last dimension, as in PyTorch.

    ``mode``: ``"constant"`` (with ``value``, default 0), ``"reflect"`` (mirror without the
    edge; each pad smaller than the dimension), ``"replicate"`` (repeat the edge) or
    ``"circular"`` (wrap around; each pad at most the dimension). Padding is on the tape:
    the gradient of every copied element goes back to its source.
    """
    fn = "pad"
    x = _t(input, fn)
    p = tuple(pad) if isinstance(pad, (tuple, list)) else None
    if p is None or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in p
    ):
        raise TypeError(f"pad: padding must be a tuple of ints, got {pad!r}")
    if len(p) % 2:
        raise ValueError(f"pad: padding {p} must have an even length (pairs per dimension)")
    k = len(p) // 2
    if k > x.ndim:
        raise ValueError(f"pad: padding {p} covers {k} dimensions, the input has {x.ndim}")
    if any(v < 0 for v in p):
        raise ValueError(f"pad: negative padding {p} is not supported")
    if mode not in ("constant", *_MODES):
        raise ValueError(
            f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}"
        )
    pairs = [(0, 0)] * (x.ndim - k) + [(int(p[2 * i]), int(p[2 * i + 1])) for i in range(k)][::-1]
    if mode == "constant":
        return _shape.Pad.apply(x, tuple(pairs), value=0.0 if value is None else value)
    if value not in (None, 0, 0.0):
        raise ValueError(f"pad: value is only used with mode='constant', got mode={mode!r}")
    if mode != "constant" and x.ndim - k < 1:
        raise ValueError(
            f"pad: {mode} padding needs a batch or channel dimension before the padded "
            f"ones, got {x.shape}"
        )
    for (lo, hi), n in zip(pairs[x.ndim - k :], x.shape[x.ndim - k :]):
        if mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(
                f"pad: reflect padding {max(lo, hi)} must be smaller than the dimension ({n}) "
                f"of input {x.shape}"
            )
        if mode == "circular" and max(lo, hi) > n:
            raise ValueError(
                f"pad: circular padding {max(lo, hi)} must be at most the dimension ({n}) of "
                f"input {x.shape}"
            )
        if mode == "replicate" and n == 0:
            raise ValueError(f"pad: cannot replicate an empty dimension of input {x.shape}")
    return T.PadMode.apply(x, pads=tuple(pairs), mode=_MODES[mode])
