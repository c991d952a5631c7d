"""Pooling kernels.

``max_pool2d`` variant interface::

    forward(x, kernel, stride, padding, dilation, out_hw) -> (y, idx)
        x (N, C, H, W) C-contiguous; kernel/stride/padding/dilation (h, w) pairs; out_hw
        (Ho, Wo) computed by the op (ceil_mode is the op's business). Padding counts as
        -inf. idx (N, C, Ho, Wo) int32: the flat index ih*W + iw of each maximum (the
        first one in scan order on ties); as in PyTorch a NaN in the window is the
        maximum (the last NaN in scan order), and an all -inf window gives its first pixel.
    backward(gy, idx, x_shape) -> gx     scatter-add of gy at idx

``avg_pool2d`` variant interface::

    forward(x, kernel, stride, padding, out_hw, count_include_pad) -> y
        the window sum divided by PyTorch's divisor: with count_include_pad the window
        clipped to the padded input, else the count of input pixels in it.
    backward(gy, x_shape, kernel, stride, padding, count_include_pad) -> gx

``adaptive_avg_pool2d`` variant interface::

    forward(x, out_hw) -> y     window rows floor(i*H/Ho) .. ceil((i+1)*H/Ho), columns alike
    backward(gy, x_shape) -> gx

Every pooling kernel parallelises over (image, channel) planes: memory bound, no GEMM.

The call records: :class:`MaxPool2dCall`, :class:`AvgPool2dCall`,
:class:`AdaptiveAvgPool2dCall`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from .. import examples as ex
from ..calls import KernelCall, pair
from ..registry import register, set_rule


@dataclass(frozen=True)
class MaxPool2dCall(KernelCall):
    """A max_pool2d call: input shape, the (h, w) pairs, the output size, dtype."""

    op: ClassVar[str] = "max_pool2d"
    functional: ClassVar[str] = "max_pool2d"
    x_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]
    dtype: str

    @classmethod
    def of(cls, x, kernel, stride, padding, dilation, out_hw) -> MaxPool2dCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(
            pair(x.shape), pair(kernel), pair(stride), pair(padding), pair(dilation),
            pair(out_hw), x.dtype.str,
        )  # fmt: skip

    def forward(self, mod: ModuleType, x: Any) -> Any:
        """(y, idx)"""
        return mod.forward(x, self.kernel, self.stride, self.padding, self.dilation, self.out_hw)

    def backward(self, mod: ModuleType, gy: Any, idx: Any) -> Any:
        """The backward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.backward(gy, idx, self.x_shape)

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        return self.backward(mod, out[0], out[1])

    def bench_params(self) -> dict[str, Any]:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        n, c, h, w = self.x_shape
        return {"N": n, "C": c, "H": h, "W": w, "k": self.kernel, "stride": self.stride,
                "padding": self.padding}  # fmt: skip


@dataclass(frozen=True)
class AvgPool2dCall(KernelCall):
    """An avg_pool2d call: input shape, the (h, w) pairs, the output size, the divisor
    choice, dtype."""

    op: ClassVar[str] = "avg_pool2d"
    functional: ClassVar[str] = "avg_pool2d"
    x_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    out_hw: tuple[int, int]
    count_include_pad: bool
    dtype: str

    @classmethod
    def of(cls, x, kernel, stride, padding, out_hw, count_include_pad) -> AvgPool2dCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(
            pair(x.shape), pair(kernel), pair(stride), pair(padding), pair(out_hw),
            bool(count_include_pad), x.dtype.str,
        )  # fmt: skip

    def forward(self, mod: ModuleType, x: Any) -> Any:
        """The forward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.forward(
            x, self.kernel, self.stride, self.padding, self.out_hw, self.count_include_pad
        )

    def backward(self, mod: ModuleType, gy: Any) -> Any:
        """The backward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.backward(
            gy, self.x_shape, self.kernel, self.stride, self.padding, self.count_include_pad
        )

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        return self.backward(mod, out)

    def bench_params(self) -> dict[str, Any]:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        n, c, h, w = self.x_shape
        return {"N": n, "C": c, "H": h, "W": w, "k": self.kernel, "stride": self.stride,
                "padding": self.padding}  # fmt: skip


@dataclass(frozen=True)
class AdaptiveAvgPool2dCall(KernelCall):
    """An adaptive_avg_pool2d call: input shape, output size, dtype."""

    op: ClassVar[str] = "adaptive_avg_pool2d"
    functional: ClassVar[str] = "adaptive_avg_pool2d"
    x_shape: tuple[int, ...]
    out_hw: tuple[int, int]
    dtype: str

    @classmethod
    def of(cls, x, out_hw) -> AdaptiveAvgPool2dCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(pair(x.shape), pair(out_hw), x.dtype.str)

    def forward(self, mod: ModuleType, x: Any) -> Any:
        """The forward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.forward(x, self.out_hw)

    def backward(self, mod: ModuleType, gy: Any) -> Any:
        """The backward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.backward(gy, self.x_shape)

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        return self.backward(mod, out)

    def bench_params(self) -> dict[str, Any]:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        n, c, h, w = self.x_shape
        return {"N": n, "C": c, "H": h, "W": w}


# Measured on 2 cores (benchmarks/bench_pool.py): on inputs of a few million elements the
# Numba kernels ran max_pool2d 1.2-2x and avg_pool2d up to 1.1x faster than the Cython
# ones (the Cython build has no -march=native); on small inputs Cython's OpenMP regions
# start faster than Numba's thread pool.
_LARGE = 1_000_000


def _size(call: KernelCall) -> int:
    try:
        n, c, h, w = call.x_shape
        return n * c * h * w
    except (AttributeError, TypeError, ValueError):
        return 0


def _pool_rule(call: KernelCall) -> list[str]:
    if _size(call) >= _LARGE:
        return ["direct-numba", "direct-cython"]
    return ["direct-cython", "direct-numba"]


def _max_pool_rule(call: MaxPool2dCall) -> list[str]:
    # Windows fully inside the input have an unrolled 2x2 / branch-free Cython path, several
    # times faster than Numba's at 1 thread on 32x64x32x32 (2x2 stride 2) and LeNet's
    # 64x6x28x28; the general (padded) windows keep the size rule.
    try:
        if call.padding == (0, 0) and call.kernel == (2, 2) and call.stride == (2, 2):
            return ["direct-cython", "direct-numba"]
    except AttributeError:
        pass
    return _pool_rule(call)


_P = __name__
register("max_pool2d", "reference", f"{_P}.max_reference")
register("max_pool2d", "direct-numba", f"{_P}.max_numba")
register("max_pool2d", "direct-cython", f"{_P}.max_cy")
set_rule("max_pool2d", _max_pool_rule)

register("avg_pool2d", "reference", f"{_P}.avg_reference")
register("avg_pool2d", "direct-numba", f"{_P}.avg_numba")
register("avg_pool2d", "direct-cython", f"{_P}.avg_cy")
set_rule("avg_pool2d", _pool_rule)

register("adaptive_avg_pool2d", "reference", f"{_P}.adaptive_reference")
register("adaptive_avg_pool2d", "direct-numba", f"{_P}.adaptive_numba")
register("adaptive_avg_pool2d", "direct-cython", f"{_P}.adaptive_cy")
set_rule("adaptive_avg_pool2d", lambda sig: ["direct-cython", "direct-numba"])


# --- example calls and bench cases (kernels/examples.py) ---------------------------------


def _pool_dims(p: dict) -> tuple[int, int]:
    kh, kw = _pair2(p["k"])
    sh, sw = _pair2(p.get("stride", p["k"]))
    ph, pw = _pair2(p.get("padding", 0))
    return (p["H"] + 2 * ph - kh) // sh + 1, (p["W"] + 2 * pw - kw) // sw + 1


def _pair2(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool_label(p: dict) -> str:
    kh, kw = _pair2(p["k"])
    s = _pair2(p.get("stride", p["k"]))[0]
    return f"N{p['N']} {p['C']}ch {p['H']}x{p['W']} k{kh}x{kw} s{s}"


def _pool_kwargs(p: dict) -> dict:
    return {
        "kernel_size": _pair2(p["k"]),
        "stride": _pair2(p.get("stride", p["k"])),
        "padding": _pair2(p.get("padding", 0)),
    }


def _pool_flops(p: dict, direction: str) -> int:
    kh, kw = _pair2(p["k"])
    ho, wo = _pool_dims(p)
    outs = ex.prod(p["N"], p["C"], ho, wo)
    return ex.per_direction(outs * kh * kw, outs, direction)


def _window_bench(name: str, index_bytes: int, aliases: tuple[str, ...]) -> ex.BenchCase:
    """The bench case of a windowed pool: x read and y written each way (max pooling also
    writes its int32 argmax forward and reads it backward: ``index_bytes`` per output)."""

    def nbytes(p: dict, direction: str) -> int:
        ho, wo = _pool_dims(p)
        moved = ex.F32 * ex.elems(p) + (ex.F32 + index_bytes) * ex.prod(p["N"], p["C"], ho, wo)
        return ex.per_direction(moved, moved, direction)

    def call(F: Any, T: dict, p: dict) -> Any:
        return getattr(F, name)(T["x"], **_pool_kwargs(p))

    return ex.BenchCase(
        "bytes", ({**_NCHW, "k": 2},), _pool_label, ex.x_input, call, _pool_flops, nbytes,
        aliases=aliases,
    )  # fmt: skip


def _gap_bytes(p: dict, direction: str) -> int:
    x, y = ex.F32 * ex.elems(p), ex.F32 * p["N"] * p["C"]
    return ex.per_direction(x + y, y + x, direction)


_NCHW = {"N": 64, "C": 64, "H": 32, "W": 32}

MaxPool2dCall.examples = (
    ex.Example(lambda F, x: F.max_pool2d(x, 3, 2, 1), ((2, 3, 7, 8),)),
    ex.Example(lambda F, x: F.max_pool2d(x, 2, ceil_mode=True), ((1, 2, 5, 5),), "ceil"),
)
MaxPool2dCall.determinism = ex.Example(lambda F, x: F.max_pool2d(x, 3, 2, 1), ((4, 6, 12, 12),))
MaxPool2dCall.bench = _window_bench("max_pool2d", 4, ("max_pool", "maxpool"))

AvgPool2dCall.examples = (
    ex.Example(lambda F, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), ((2, 3, 7, 8),)),
)
AvgPool2dCall.determinism = ex.Example(lambda F, x: F.avg_pool2d(x, 3, 2, 1), ((4, 6, 12, 12),))
AvgPool2dCall.bench = _window_bench("avg_pool2d", 0, ("avg_pool", "avgpool"))

AdaptiveAvgPool2dCall.examples = (
    ex.Example(lambda F, x: F.adaptive_avg_pool2d(x, (3, 2)), ((2, 3, 7, 5),)),
)
AdaptiveAvgPool2dCall.determinism = ex.Example(
    lambda F, x: F.adaptive_avg_pool2d(x, (5, 3)), ((4, 6, 12, 12),)
)
AdaptiveAvgPool2dCall.bench = ex.BenchCase(
    "bytes", ({"N": 64, "C": 64, "H": 8, "W": 8},),
    lambda p: f"N{p['N']} {p['C']}ch {p['H']}x{p['W']} > 1x1", ex.x_input,
    lambda F, T, p: F.adaptive_avg_pool2d(T["x"], 1), ex.one_per_element, _gap_bytes,
    aliases=("adaptive_avg_pool", "gap"),
)  # fmt: skip
