"""Upsampling layer."""

from __future__ import annotations

from typing import Any

from . import functional as F
from .module import Module


class Upsample(Module):
    """Resize the spatial axes by nearest or bilinear interpolation
    (:func:`tapegrad.nn.functional.interpolate`; PyTorch's ``nn.Upsample``).

    Parameters
    ----------
    size : int or tuple of int, optional
        Output spatial size.
    scale_factor : float or tuple of float, optional
        Spatial multiplier (exactly one of ``size`` and ``scale_factor``).
    mode : {"nearest", "bilinear"}
        Interpolation mode (default ``nearest``).
    align_corners : bool, optional
        Bilinear only; see ``interpolate``.
    recompute_scale_factor : bool, optional
        See ``interpolate``.

    Raises
    ------
    ValueError
        Both or neither of ``size`` and ``scale_factor`` (raised when called, with the
        input's shape, like every other argument error).
    """

    def __init__(
        self,
        size: Any = None,
        scale_factor: Any = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ) -> None:
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, x):
        """Resize ``x`` (N, C, H, W) (or (N, C, W) for nearest) to (N, C, Ho, Wo)."""
        return F.interpolate(
            x, self.size, self.scale_factor, self.mode, self.align_corners,
            self.recompute_scale_factor,
        )  # fmt: skip

    def extra_repr(self) -> str:
        """Size or scale factor and mode, as shown in the repr."""
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode='{self.mode}'"
