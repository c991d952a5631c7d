"""Upsampling: interpolate (nearest, bilinear), PyTorch's signature and semantics."""

from __future__ import annotations

from typing import Any

from ...ops.upsample import Upsample
from ...tensor import Tensor
from ._common import _t


def interpolate(
    input: Tensor,
    size: int | tuple[int, ...] | None = None,
    scale_factor: float | tuple[float, ...] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
) -> Tensor:
    """Resize the spatial axes of ``input`` by nearest or bilinear interpolation, as
    ``torch.nn.functional.interpolate``.

    Parameters
    ----------
    input : Tensor
        (N, C, H, W), or (N, C, W) for ``nearest``; float32 or float64.
    size : int or tuple of int, optional
        The output's spatial size (one int for every axis, or one per axis).
    scale_factor : float or tuple of float, optional
        Multiplier of the spatial size: output size ``floor(in * scale_factor)``. Exactly
        one of ``size`` and ``scale_factor`` is given.
    mode : {"nearest", "bilinear"}
        ``nearest``: output pixel ``i`` reads input ``floor(i * s)``; ``bilinear``: a
        weighted mean of the 2x2 input pixels around the source position.
    align_corners : bool, optional
        Bilinear only (None means False): True maps the corner pixels' centres onto each
        other (``s = (in - 1) / (out - 1)``); False maps the corners' edges
        (``src = s * (i + 0.5) - 0.5``, clamped at 0).
    recompute_scale_factor : bool, optional
        With ``scale_factor``: True computes the source positions from the input and
        output sizes (``s = in / out``); False or None (the default, as PyTorch) from the
        given factor (``s = 1 / scale_factor``). Not allowed with ``size``.

    Returns
    -------
    Tensor
        (N, C, Ho, Wo) (or (N, C, Wo)), the input's dtype; differentiable.

    Raises
    ------
    TypeError
        Non-float input, or an argument of the wrong type.
    ValueError
        A wrong rank (bilinear needs 4-D), an unknown mode, both or neither of ``size``
        and ``scale_factor``, ``align_corners`` with ``nearest``, ``recompute_scale_factor``
        with ``size``, or a size / scale factor that is not positive.
    """
    x = _t(input, "interpolate")
    return Upsample.apply(x, size, scale_factor, mode, align_corners, recompute_scale_factor)


def upsample(
    input: Tensor,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> Tensor:
    """``interpolate`` under its older name (``torch.nn.functional.upsample``); same
    arguments, shapes and errors."""
    x = _t(input, "upsample")
    return Upsample.apply(x, size, scale_factor, mode, align_corners, None, "upsample")
