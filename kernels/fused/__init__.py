"""Fused epilogues: a ReLU applied in the same pass as the work before it, and the plain
same-shape sum those passes share their loops with.

Three ops, one module per variant:

- ``bias_relu``: the pass after a convolution (or batch norm) run without its bias: the
  bias added and the ReLU applied in place, in one pass that also writes the ReLU's mask;
  its backward masks the output gradient and sums the bias gradient in one pass.
- ``add_relu``: ``relu(a + b)`` of a residual block in one pass (output and mask).
- ``add``: ``a + b`` of two arrays of one shape and dtype: a residual sum without a ReLU
  after it, and the tape summing the gradients of a tensor used twice (so both run on the
  thread team instead of NumPy's one thread).

Variant interface (C-contiguous float32/float64 arrays, validated by ``tapegrad.ops.fused``)::

    bias_relu_forward(y, b) -> mask
        y (N, C, *) is changed in place to relu(y + b[c]) (b (C,) of y's dtype, or None for
        relu(y)); mask uint8 of y's shape, 1 where not (y + b) <= 0. As PyTorch's ReLU:
        NaN and -0.0 pass through, the gradient flows through NaN.
    masked_backward(g, mask, channel_sum) -> (gx, gb)
        gx = g where mask, +0.0 elsewhere (NaN/inf in g included); with channel_sum, gb (C,)
        of g's dtype is gx summed over every axis but 1 (NumPy's sum, as the unfused
        convolution's bias gradient), else None.
    add_relu_forward(a, b) -> (y, mask)
        a, b of one shape and dtype: y = relu(a + b), mask as above.
    add_forward(a, b) -> y
        a, b of one shape and dtype: y = a + b (a new array).

The call records are :class:`BiasReluCall`, :class:`AddReluCall` and :class:`AddCall`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from .. import examples as ex
from ..calls import KernelCall, nchw, pair
from ..registry import register, set_rule

_FUNCTIONS = ("bias_relu_forward", "masked_backward", "add_relu_forward")


SERIAL_BELOW = 1 << 19
"""Calls on fewer elements than this run on the calling thread in the ``fused-cython``
variant (the records' ``serial_below``). These passes are memory bound and waking the team
costs a fixed few microseconds: on a quiet 2-core machine two threads took 0.5-0.66x the
time of one from 2^18 elements, about the same at 2^16
(benchmarks/results/elementwise-threads.md); 2^19 leaves room for faster machines, where a
pass over 2^18 elements is short enough for the wake-up to matter."""


@dataclass(frozen=True)
class BiasReluCall(KernelCall):
    """A bias + ReLU epilogue call: the output's shape, whether there is a bias, the dtype."""

    serial_below: ClassVar[int] = SERIAL_BELOW
    kernel_functions: ClassVar[tuple[str, ...]] = _FUNCTIONS
    op: ClassVar[str] = "bias_relu"
    functional: ClassVar[str] = "conv2d_relu"
    y_shape: tuple[int, ...]
    bias: bool
    dtype: str

    @classmethod
    def of(cls, y, b) -> BiasReluCall:
        """The record of a call on these arrays (shape and dtype read from them)."""
        return cls(pair(y.shape), b is not None, y.dtype.str)

    def forward(self, mod: ModuleType, y: Any, b: Any) -> Any:
        """The mask; ``y`` is changed in place."""
        return mod.bias_relu_forward(y, b)

    def backward(self, mod: ModuleType, g: Any, mask: Any) -> Any:
        """(gx, gb): the masked gradient and, with a bias, its per-channel sum."""
        return mod.masked_backward(g, mask, self.bias)

    def trial(self, inputs, needs, training):
        """Autotune's trial on a copy of the output: the forward works in place."""
        y, b = inputs

        def run(mod: ModuleType) -> None:
            out = y.copy()
            mask = self.forward(mod, out, b)
            if training:
                self.backward(mod, out, mask)

        return run

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return nchw(self.y_shape) if 2 <= len(self.y_shape) <= 4 else None


@dataclass(frozen=True)
class AddReluCall(KernelCall):
    """An ``add_relu`` call: the operands' shape and dtype."""

    serial_below: ClassVar[int] = SERIAL_BELOW
    kernel_functions: ClassVar[tuple[str, ...]] = _FUNCTIONS
    op: ClassVar[str] = "add_relu"
    functional: ClassVar[str] = "add_relu"
    x_shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, a) -> AddReluCall:
        """The record of a call on these arrays (shape and dtype read from them)."""
        return cls(pair(a.shape), a.dtype.str)

    def forward(self, mod: ModuleType, a: Any, b: Any) -> Any:
        """(y, mask)"""
        return mod.add_relu_forward(a, b)

    def backward(self, mod: ModuleType, g: Any, mask: Any) -> Any:
        """The masked gradient (the same for both operands)."""
        return mod.masked_backward(g, mask, False)[0]

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output."""
        return self.backward(mod, *out)

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return nchw(self.x_shape) if 2 <= len(self.x_shape) <= 4 else None


@dataclass(frozen=True)
class AddCall(KernelCall):
    """An ``add`` call (``a + b``, operands of one shape and dtype): their shape and dtype.

    No backward kernel: the gradient ``g`` goes to both operands as it is."""

    serial_below: ClassVar[int] = SERIAL_BELOW
    kernel_functions: ClassVar[tuple[str, ...]] = ("add_forward",)
    op: ClassVar[str] = "add"
    functional: ClassVar[str] = "add"
    x_shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, a) -> AddCall:
        """The record of a call on these arrays (shape and dtype read from them)."""
        return cls(pair(a.shape), a.dtype.str)

    def forward(self, mod: ModuleType, a: Any, b: Any) -> Any:
        """a + b"""
        return mod.add_forward(a, b)

    def backward_trial(self, mod, out, inputs, needs):
        """No backward kernel (the gradient passes through): autotune times the forward."""
        return NotImplemented

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return nchw(self.x_shape) if 2 <= len(self.x_shape) <= 4 else None


def same_shape_floats(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are C-contiguous float32/float64 arrays of one shape and
    dtype (the calls the ``add`` kernels take; anything else is left to NumPy)."""
    return (
        type(a) is np.ndarray
        and type(b) is np.ndarray
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.dtype.char in "fd"
        and a.flags.c_contiguous
        and b.flags.c_contiguous
    )


_P = __name__
for _op in ("bias_relu", "add_relu", "add"):
    register(_op, "reference", f"{_P}.reference")
    register(_op, "fused-numba", f"{_P}.epilogue_numba")
    register(_op, "fused-cython", f"{_P}.epilogue_cy")
    set_rule(_op, lambda call: ["fused-numba", "fused-cython"])


# --- example calls and bench cases (kernels/examples.py) ---------------------------------
# PyTorch has no fused functions of these names: reference is the examples' oracle, and
# bench compares with the unfused computation.


def _conv1x1_build(p: dict, rng: Any, dtype: Any):
    arrays, _ = ex.x_input(p, rng, dtype)
    c = p["C"]
    arrays["w"] = (rng.standard_normal((c, c, 1, 1)) / c**0.5).astype(dtype)
    arrays["b"] = rng.standard_normal(c).astype(dtype)
    return arrays, ("x", "w", "b")


def _add_build(p: dict, rng: Any, dtype: Any):
    shape = (p["N"], p["C"], p["H"], p["W"])
    arrays = {k: rng.standard_normal(shape).astype(dtype) for k in ("a", "b")}
    return arrays, ("a", "b")


def _epilogue_bytes(p: dict, direction: str) -> int:
    """The epilogue's own traffic: y read and written and a one-byte mask written forward;
    g and the mask read and the gradient written backward."""
    n = ex.elems(p)
    return ex.per_direction(2 * ex.F32 * n + n, 2 * ex.F32 * n + n, direction)


def _add_bytes(p: dict, direction: str) -> int:
    n = ex.elems(p)
    return ex.per_direction(3 * ex.F32 * n + n, 2 * ex.F32 * n + n, direction)


def _add_sum_bytes(p: dict, direction: str) -> int:
    n = ex.elems(p)
    return ex.per_direction(3 * ex.F32 * n, 0, direction)


_NCHW = {"N": 64, "C": 64, "H": 32, "W": 32}

BiasReluCall.examples = (
    ex.Example(
        lambda F, x, w, b: F.conv2d_relu(x, w, b, padding=1),
        ((2, 3, 6, 5), (4, 3, 3, 3), (4,)),
        torch=False,
    ),
)
BiasReluCall.determinism = ex.Example(
    lambda F, x, w, b: F.conv2d_relu(x, w, b, padding=1),
    ((4, 6, 64, 64), (8, 6, 3, 3), (8,)),
    torch=False,
)
BiasReluCall.bench = ex.BenchCase(
    "bytes", (dict(_NCHW),), lambda p: ex.nchw_label(p) + " after 1x1 conv", _conv1x1_build,
    lambda F, T, p: F.conv2d_relu(T["x"], T["w"], T["b"]), ex.one_per_element, _epilogue_bytes,
    torch_call=lambda tF, T, p: tF.relu(tF.conv2d(T["x"], T["w"], T["b"])),
)  # fmt: skip

AddReluCall.examples = (
    ex.Example(lambda F, a, b: F.add_relu(a, b), ((3, 4, 5), (3, 4, 5)), torch=False),
)
AddReluCall.determinism = ex.Example(
    lambda F, a, b: F.add_relu(a, b), ((4, 6, 64, 64), (4, 6, 64, 64)), torch=False
)
AddReluCall.bench = ex.BenchCase(
    "bytes", (dict(_NCHW),), ex.nchw_label, _add_build,
    lambda F, T, p: F.add_relu(T["a"], T["b"]), ex.one_per_element, _add_bytes,
    torch_call=lambda tF, T, p: tF.relu(T["a"] + T["b"]),
)  # fmt: skip

AddCall.examples = (
    ex.Example(lambda F, a, b: a + b, ((3, 4, 5), (3, 4, 5)), name="sum"),
    # r used twice: the tape sums its two gradients through the same kernels
    ex.Example(
        lambda F, a, b: (lambda r: r + r * b)(F.relu(a)),
        ((2, 3, 4, 4), (2, 3, 4, 4)),
        name="gradient-sum",
    ),
)
# past the kernels' serial threshold: the threaded path
AddCall.determinism = ex.Example(lambda F, a, b: a + b, ((8, 16, 64, 64), (8, 16, 64, 64)))
AddCall.bench = ex.BenchCase(
    "bytes", (dict(_NCHW),), ex.nchw_label, _add_build,
    lambda F, T, p: T["a"] + T["b"], ex.one_per_element, _add_sum_bytes,
    torch_call=lambda tF, T, p: T["a"] + T["b"],
)  # fmt: skip
