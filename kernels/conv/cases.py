"""The example calls, determinism rows and bench cases of the three convolution families'
call records (``conv2d``, ``depthwise_conv2d``, ``conv_transpose2d``; see
:mod:`tapegrad.kernels.examples`).

Each family's ``__init__.py`` sets its record's ``examples``, ``determinism`` and ``bench``
from here; the bench helpers (labels, inputs, exact FLOP and byte counts) are shared by the
three, which is why they live in one module rather than in each family.

Bench case parameters: ``N``, ``C``, ``H``, ``W``, ``O`` (output channels), ``k`` (kernel
size, int or pair), and optionally ``stride``, ``padding``, ``dilation``, ``groups``,
``output_padding`` (transposed) and ``bias`` (default True).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import examples as ex


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


# --- conv2d and depthwise: x (N, C, H, W), w (O, C/groups, kH, kW) ------------------------


def _conv_out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_dims(p: dict) -> tuple[int, int, int, int]:
    """``(kH, kW, Ho, Wo)`` of a conv2d case."""
    kh, kw = _pair(p["k"])
    sh, sw = _pair(p.get("stride", 1))
    ph, pw = _pair(p.get("padding", 0))
    dh, dw = _pair(p.get("dilation", 1))
    return kh, kw, _conv_out(p["H"], kh, sh, ph, dh), _conv_out(p["W"], kw, sw, pw, dw)


def _conv_label(p: dict) -> str:
    kh, kw, _, _ = conv_dims(p)
    g = p.get("groups", 1)
    s = f"N{p['N']} {p['C']}>{p['O']} {p['H']}x{p['W']} k{kh}x{kw}"
    s += f" s{_pair(p.get('stride', 1))[0]} p{_pair(p.get('padding', 0))[0]}"
    return s + (f" g{g}" if g != 1 else "")


def _dw_label(p: dict) -> str:
    m = p["O"] // p["C"]
    kh, kw, _, _ = conv_dims(p)
    s = f"N{p['N']} {p['C']}ch {p['H']}x{p['W']} k{kh}x{kw}"
    s += f" s{_pair(p.get('stride', 1))[0]} p{_pair(p.get('padding', 0))[0]}"
    return s + (f" x{m}" if m != 1 else "")


def _weighted(p: dict, rng: np.random.Generator, dtype: Any, w_shape: tuple, fan_in: int):
    arrays = {
        "x": rng.standard_normal((p["N"], p["C"], p["H"], p["W"])).astype(dtype),
        "w": (rng.standard_normal(w_shape) / math.sqrt(fan_in)).astype(dtype),
    }
    if p.get("bias", True):
        arrays["b"] = rng.standard_normal(p["O"]).astype(dtype)
    return arrays, tuple(arrays)


def _conv_build(p: dict, rng: np.random.Generator, dtype: Any):
    kh, kw, _, _ = conv_dims(p)
    cg = p["C"] // p.get("groups", 1)
    return _weighted(p, rng, dtype, (p["O"], cg, kh, kw), cg * kh * kw)


def _conv_call(F: Any, T: dict, p: dict) -> Any:
    return F.conv2d(
        T["x"], T["w"], T.get("b"), stride=_pair(p.get("stride", 1)),
        padding=_pair(p.get("padding", 0)), dilation=_pair(p.get("dilation", 1)),
        groups=p.get("groups", 1),
    )  # fmt: skip


def _work(p: dict, macs: int, outs: int, x: int, w: int, y: int, direction: str, flops: bool):
    """FLOPs (multiply and add counted apart, bias adds included; backward: both gradients
    repeat the forward's multiply-adds) or float32 bytes (each array read or written once)."""
    bias = p.get("bias", True)
    if flops:
        b = outs if bias else 0
        return ex.per_direction(2 * macs + b, 4 * macs + b, direction)
    b = p["O"] if bias else 0
    # forward reads x, w, b and writes y; backward reads gy, x, w and writes gx, gw, gb
    return ex.F32 * ex.per_direction(x + w + b + y, y + x + w + x + w + b, direction)


def _conv_sizes(p: dict) -> tuple[int, int, int, int]:
    kh, kw, ho, wo = conv_dims(p)
    cg = p["C"] // p.get("groups", 1)
    outs = ex.prod(p["N"], p["O"], ho, wo)
    return outs * cg * kh * kw, outs, ex.prod(p["O"], cg, kh, kw), outs


def _conv_flops(p: dict, direction: str) -> int:
    macs, outs, _, _ = _conv_sizes(p)
    return _work(p, macs, outs, 0, 0, 0, direction, True)


def _conv_bytes(p: dict, direction: str) -> int:
    macs, outs, w, y = _conv_sizes(p)
    return _work(p, macs, outs, ex.elems(p), w, y, direction, False)


# --- conv_transpose2d: x (N, C, H, W), w (C, O/groups, kH, kW) ----------------------------


def convt_dims(p: dict) -> tuple[int, int, int, int]:
    """``(kH, kW, Ho, Wo)`` of a conv_transpose2d case."""
    kh, kw = _pair(p["k"])
    sh, sw = _pair(p.get("stride", 1))
    ph, pw = _pair(p.get("padding", 0))
    oh, ow = _pair(p.get("output_padding", 0))
    dh, dw = _pair(p.get("dilation", 1))
    ho = (p["H"] - 1) * sh - 2 * ph + dh * (kh - 1) + oh + 1
    wo = (p["W"] - 1) * sw - 2 * pw + dw * (kw - 1) + ow + 1
    return kh, kw, ho, wo


def _convt_label(p: dict) -> str:
    kh, kw, ho, wo = convt_dims(p)
    s = f"N{p['N']} {p['C']}>{p['O']} {p['H']}x{p['W']}>{ho}x{wo} k{kh}x{kw}"
    return s + f" s{_pair(p.get('stride', 1))[0]} p{_pair(p.get('padding', 0))[0]}"


def _convt_build(p: dict, rng: np.random.Generator, dtype: Any):
    kh, kw, _, _ = convt_dims(p)
    return _weighted(p, rng, dtype, (p["C"], p["O"] // p.get("groups", 1), kh, kw), p["C"])


def _convt_call(F: Any, T: dict, p: dict) -> Any:
    return F.conv_transpose2d(
        T["x"], T["w"], T.get("b"), stride=_pair(p.get("stride", 1)),
        padding=_pair(p.get("padding", 0)), output_padding=_pair(p.get("output_padding", 0)),
        groups=p.get("groups", 1), dilation=_pair(p.get("dilation", 1)),
    )  # fmt: skip


def _convt_sizes(p: dict) -> tuple[int, int, int, int]:
    kh, kw, ho, wo = convt_dims(p)
    og = p["O"] // p.get("groups", 1)
    macs = ex.prod(p["N"], p["C"], p["H"], p["W"], og, kh, kw)
    return macs, ex.prod(p["N"], p["O"], ho, wo), ex.prod(p["C"], og, kh, kw)


def _convt_flops(p: dict, direction: str) -> int:
    macs, outs, _ = _convt_sizes(p)
    return _work(p, macs, outs, 0, 0, 0, direction, True)


def _convt_bytes(p: dict, direction: str) -> int:
    macs, outs, w = _convt_sizes(p)
    return _work(p, macs, outs, ex.elems(p), w, outs, direction, False)


# --- the declarations ----------------------------------------------------------------------

CONV2D_EXAMPLES = (
    ex.Example(lambda F, x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
               ((2, 3, 7, 6), (4, 3, 3, 2), (4,))),
    ex.Example(lambda F, x, w, b: F.conv2d(x, w, b, stride=1, padding="same"),
               ((1, 2, 5, 5), (3, 2, 2, 3), (3,)), "same"),
    ex.Example(lambda F, x, w: F.conv2d(x, w, groups=2, dilation=2),
               ((2, 4, 7, 7), (6, 2, 2, 2)), "groups"),
    ex.Example(lambda F, x, w, b: F.conv1d(x, w, b, padding=1),
               ((2, 3, 9), (5, 3, 3), (5,)), "conv1d"),
)  # fmt: skip
CONV2D_DETERMINISM = ex.Example(
    lambda F, x, w: F.conv2d(x, w, padding=1, stride=2), ((4, 6, 12, 12), (8, 6, 3, 3))
)
CONV2D_BENCH = ex.BenchCase(
    "flops", ({"N": 32, "C": 64, "O": 64, "H": 32, "W": 32, "k": 3, "padding": 1},),
    _conv_label, _conv_build, _conv_call, _conv_flops, _conv_bytes, aliases=("conv",),
)  # fmt: skip

# groups == input channels: F.conv2d picks the depthwise kernels
DEPTHWISE_EXAMPLES = (
    ex.Example(lambda F, x, w: F.conv2d(x, w, padding=1, groups=3),
               ((2, 3, 6, 7), (6, 1, 3, 3))),
    ex.Example(lambda F, x, w, b: F.conv2d(x, w, b, stride=2, padding=2, dilation=2, groups=4),
               ((1, 4, 9, 8), (4, 1, 3, 3), (4,)), "strided"),
)  # fmt: skip
DEPTHWISE_DETERMINISM = ex.Example(
    lambda F, x, w: F.conv2d(x, w, padding=1, groups=6), ((4, 6, 12, 12), (12, 1, 3, 3))
)
DEPTHWISE_BENCH = ex.BenchCase(
    "bytes", ({"N": 32, "C": 128, "O": 128, "H": 32, "W": 32, "k": 3, "padding": 1,
               "groups": 128},),
    _dw_label, _conv_build, _conv_call, _conv_flops, _conv_bytes, aliases=("depthwise",),
)  # fmt: skip

CONV_TRANSPOSE2D_EXAMPLES = (
    ex.Example(lambda F, x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                     output_padding=1),
               ((2, 3, 5, 4), (3, 2, 3, 3), (2,))),
    ex.Example(lambda F, x, w: F.conv_transpose1d(x, w, stride=2),
               ((2, 3, 7), (3, 4, 3)), "conv_transpose1d"),
)  # fmt: skip
CONV_TRANSPOSE2D_DETERMINISM = ex.Example(
    lambda F, x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
    ((4, 6, 12, 12), (6, 4, 3, 3)),
)
CONV_TRANSPOSE2D_BENCH = ex.BenchCase(
    "flops", ({"N": 32, "C": 64, "O": 32, "H": 16, "W": 16, "k": 4, "stride": 2,
               "padding": 1},),
    _convt_label, _convt_build, _convt_call, _convt_flops, _convt_bytes,
    aliases=("conv_transpose", "convt"),
)  # fmt: skip
