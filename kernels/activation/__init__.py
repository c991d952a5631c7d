"""Activation kernels: ReLU, whose forward and backward are one read and one write pass.

Variant interface (``x``/``g`` C-contiguous float32/float64 of any shape, validated by
``tapegrad.ops.elementwise``)::

    relu_forward(x) -> (y, mask)     y = +0.0 where x < 0, else x (NaN and -0.0 kept, as
                                     PyTorch); mask uint8 of x's shape, 1 where not x <= 0
                                     (x > 0 or NaN: where PyTorch's gradient flows)
    relu_backward(g, mask) -> gx     gx = g where mask, +0.0 elsewhere (even for NaN/inf g,
                                     as PyTorch's threshold_backward)

The call record is :class:`ReluCall`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from .. import examples as ex
from ..calls import KernelCall, nchw, pair
from ..registry import register, set_rule

SERIAL_BELOW = 1 << 19
"""Calls on fewer elements than this run on the calling thread in the ``fused-cython``
variant (the records' ``serial_below``). These passes are memory bound and waking the team
costs a fixed few microseconds: on a quiet 2-core machine two threads took 0.5-0.66x the
time of one from 2^18 elements, about the same at 2^16
(benchmarks/results/elementwise-threads.md); 2^19 leaves room for faster machines, where a
pass over 2^18 elements is short enough for the wake-up to matter."""


@dataclass(frozen=True)
class ReluCall(KernelCall):
    """A relu call: the input's shape and dtype."""

    serial_below: ClassVar[int] = SERIAL_BELOW
    kernel_functions: ClassVar[tuple[str, ...]] = ("relu_forward", "relu_backward")
    op: ClassVar[str] = "relu"
    functional: ClassVar[str] = "relu"
    x_shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, x) -> ReluCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(pair(x.shape), x.dtype.str)

    def forward(self, mod: ModuleType, x: Any) -> Any:
        """(y, mask)"""
        return mod.relu_forward(x)

    def backward(self, mod: ModuleType, g: Any, mask: Any) -> Any:
        """The backward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.relu_backward(g, mask)

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        return self.backward(mod, *out)

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return nchw(self.x_shape) if 2 <= len(self.x_shape) <= 4 else None


_P = __name__
register("relu", "reference", f"{_P}.reference")
register("relu", "fused-numba", f"{_P}.fused_numba")
register("relu", "fused-cython", f"{_P}.fused_cy")
set_rule("relu", lambda call: ["fused-numba", "fused-cython"])


# --- example calls and bench cases (kernels/examples.py) ---------------------------------


ReluCall.examples = (ex.Example(lambda F, x: F.relu(x), ((3, 4, 2),)),)
# past the kernels' serial threshold: the threaded path
ReluCall.determinism = ex.Example(lambda F, x: F.relu(x), ((4, 6, 64, 64),))
ReluCall.bench = ex.BenchCase(
    "bytes", ({"N": 64, "C": 64, "H": 32, "W": 32},), ex.nchw_label, ex.x_input,
    lambda F, T, p: F.relu(T["x"]), ex.one_per_element, ex.mask_bytes,
)  # fmt: skip
