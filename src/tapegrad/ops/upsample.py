"""Upsampling op: ``interpolate`` with modes nearest and bilinear (kernel family
``upsample2d``), PyTorch's semantics for output sizes, scale factors, align_corners and
``recompute_scale_factor``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tapegrad.kernels.upsample import MODES, UpsampleCall
from tapegrad.kernels.upsample import out_size as _out_size

from ..autograd import Context, Function, linear_backward_graph
from . import tuning
from .checks import INT_MAX, check_float, contiguous, fail


def _per_axis(FN: str, name: str, v: Any, n: int, kind: type) -> tuple:
    """A number or a length-``n`` sequence of numbers of ``kind`` (int or float)."""
    ok = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    vals = (v,) * n if isinstance(v, ok) and not isinstance(v, bool) else v
    try:
        vals = tuple(vals)
    except TypeError:
        fail(FN, f"{name} must be a number or a tuple of {n} numbers, got {v!r}", TypeError)
    if len(vals) != n or not all(isinstance(x, ok) and not isinstance(x, bool) for x in vals):
        what = "int" if kind is int else "number"
        fail(
            FN,
            f"{name} must be {'an' if kind is int else 'a'} {what} or a tuple of {n} "
            f"{what}s for input with {n} spatial dimension(s), got {v!r}",
            TypeError,
        )
    return tuple(kind(x) for x in vals)


def interpolate_args(
    x: np.ndarray,
    size: Any,
    scale_factor: Any,
    mode: Any,
    align_corners: Any,
    recompute_scale_factor: Any,
    fn: str = "interpolate",
) -> tuple[tuple[int, int], str, bool, tuple[float, float] | None]:
    """Check ``F.interpolate``'s arguments on the input array; returns ``(out_hw, mode,
    align_corners, scales)`` with ``scales`` the factors the kernels use for the source
    positions (None: input / output size), as PyTorch derives them.

    Raises
    ------
    TypeError
        Non-float input, or a size / scale factor / option of the wrong type.
    ValueError
        Input not 3-D or 4-D (bilinear: 4-D), an unknown mode, both or neither of size
        and scale_factor, align_corners with nearest, recompute_scale_factor with a size,
        a size or scale factor that is not positive or gives an empty output.
    """
    FN = fn
    check_float(FN, input=x)
    if not isinstance(mode, str) or mode not in MODES:
        fail(FN, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if x.ndim not in (3, 4):
        fail(FN, f"input must be 3-D (N, C, W) or 4-D (N, C, H, W), got shape {x.shape}")
    if mode == "bilinear" and x.ndim != 4:
        fail(FN, f"mode 'bilinear' needs 4-D input (N, C, H, W), got shape {x.shape}")
    if align_corners is not None:
        if mode == "nearest":
            fail(
                FN,
                "align_corners can only be set with the interpolating mode 'bilinear', "
                f"got align_corners={align_corners!r} with mode 'nearest'",
            )
        if not isinstance(align_corners, (bool, np.bool_)):
            fail(FN, f"align_corners must be a bool or None, got {align_corners!r}", TypeError)
    if recompute_scale_factor is not None and not isinstance(
        recompute_scale_factor, (bool, np.bool_)
    ):
        fail(
            FN, f"recompute_scale_factor must be a bool or None, got {recompute_scale_factor!r}",
            TypeError,
        )  # fmt: skip
    spatial = x.shape[2:]
    n = len(spatial)
    if size is not None and scale_factor is not None:
        fail(FN, "only one of size or scale_factor should be given, got both")
    if size is None and scale_factor is None:
        fail(FN, "either size or scale_factor should be given")
    scales: tuple[float, ...] | None = None
    if size is not None:
        if recompute_scale_factor:
            fail(FN, "recompute_scale_factor is not meaningful with an explicit size")
        out = _per_axis(FN, "size", size, n, int)
        if any(s < 1 for s in out):
            fail(FN, f"size must be positive, got {size!r} for input of shape {x.shape}")
    else:
        factors = _per_axis(FN, "scale_factor", scale_factor, n, float)
        if not all(math.isfinite(f) and f > 0 for f in factors):
            fail(FN, f"scale_factor must be positive and finite, got {scale_factor!r}")
        out = tuple(_out_size(s, f) for s, f in zip(spatial, factors))
        if any(s < 1 for s in out):
            fail(
                FN,
                f"scale_factor {scale_factor!r} gives an empty output {out} for input of "
                f"shape {x.shape}",
            )
        scales = None if recompute_scale_factor else factors
    if any(s > INT_MAX for s in out):
        fail(FN, f"output size {out} is too large (at most {INT_MAX} per axis)")
    if min(spatial, default=1) < 1:
        fail(FN, f"input must have non-empty spatial dimensions, got shape {x.shape}")
    if n == 1:  # (N, C, W) runs as (N, C, 1, W)
        out = (1, *out)
        scales = None if scales is None else (1.0, *scales)
    return out, mode, bool(align_corners), scales  # type: ignore[return-value]


class Upsample(Function):
    """``apply(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
    recompute_scale_factor=None)``, as ``F.interpolate``: x (N, C, H, W) or (N, C, W) ->
    the output size (a 3-D input runs as (N, C, 1, W)), nearest or bilinear."""

    @staticmethod
    def check(
        x,
        size=None,
        scale_factor=None,
        mode="nearest",
        align_corners=None,
        recompute_scale_factor=None,
        fn="interpolate",
    ) -> tuple:
        """Validate an interpolate call (``interpolate_args``; errors start with ``fn``);
        returns forward's arguments."""
        args = interpolate_args(x, size, scale_factor, mode, align_corners,
                                recompute_scale_factor, fn)  # fmt: skip
        return (x, *args)

    @staticmethod
    def forward(ctx: Context, x, out_hw, mode="nearest", align_corners=False, scales=None):
        shape = x.shape
        x4 = contiguous(x).reshape(shape[0], shape[1], -1, shape[-1])
        call = UpsampleCall.of(x4, out_hw, mode, align_corners, scales)
        mod = tuning.resolve(ctx, call, x4)
        ctx.mod, ctx.call, ctx.x_shape = mod, call, shape
        y = call.forward(mod, x4)
        return y if len(shape) == 4 else y.reshape(shape[0], shape[1], -1)

    @staticmethod
    def backward(ctx: Context, gy):
        n, c = gy.shape[:2]
        g4 = np.ascontiguousarray(gy).reshape(n, c, *ctx.call.out_hw)
        return ctx.call.backward(ctx.mod, g4).reshape(ctx.x_shape)

    @staticmethod
    def _transpose(ctx: Context, v):
        shape = ctx.x_shape
        v4 = np.ascontiguousarray(v).reshape(shape[0], shape[1], -1, shape[-1])
        y = ctx.call.forward(ctx.mod, v4)
        return y if len(shape) == 4 else y.reshape(shape[0], shape[1], -1)

    backward_graph = linear_backward_graph(backward, _transpose)
