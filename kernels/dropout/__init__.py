"""Dropout kernels: Bernoulli (element- and channel-wise) and Gaussian multiplicative noise.

Randomness comes from Philox-4x32-10 (``kernels.rng``): element ``i`` of a call's stream
depends only on (seed, step, i), so every variant and every thread count gives the same
mask for the same (seed, step). The same module serves the ops ``dropout``,
``dropout2d`` and ``gaussian_dropout``.

Variant interface (arrays C-contiguous float32/float64, validated by ``tapegrad.ops.dropout``)::

    forward(x, seed, step, p, scale) -> (y, keep)
        keep uint8 of x's shape, 1 where Philox word i >= threshold(p) (see kernels.rng);
        y = x * scale where kept, 0 where dropped (scale = 1/(1-p), or 1 unscaled, 0 at p=1).
    backward(gy, keep, scale) -> gx                gx = gy * scale where kept, else 0
    channel_forward(x, seed, step, p, scale) -> (y, keep)
        x (P, S): one draw per row (a channel of N*C), keep (P,) uint8.
    channel_backward(gy, keep, scale) -> gx        gy (P, S), keep (P,)
    gaussian_forward(x, seed, step, sigma) -> y    y = x * (1 + sigma * z), z = rng normal(i)
    gaussian_backward(gy, seed, step, sigma) -> gx same factor, regenerated (nothing stored)

The call records: :class:`DropoutCall`, :class:`Dropout2dCall`, :class:`GaussianDropoutCall`
(the shapes and dtype only: the probability and the random key are inputs, and trials
draw no numbers since kernels are pure functions of (seed, step)).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from .. import examples as ex
from ..calls import KernelCall, nchw, pair
from ..registry import register, set_rule


class _DropCall(KernelCall):
    """The kernel calls of the three dropout records: a record of the input's shape and
    dtype, whose variant functions are ``kernel_functions`` (forward, backward)."""

    @classmethod
    def of(cls, x) -> Any:
        """The record of a call on this array (its shape and dtype)."""
        return cls(pair(x.shape), x.dtype.str)


class _MaskCall(_DropCall):
    """dropout and dropout2d: the forward draws a keep mask, the backward applies it."""

    def forward(self, mod: ModuleType, x, seed, step, p, scale) -> Any:
        """(y, keep)"""
        return getattr(mod, self.kernel_functions[0])(x, seed, step, p, scale)

    def backward(self, mod: ModuleType, gy, keep, scale) -> Any:
        """The backward kernel call with variant module ``mod`` (the family's interface)."""
        return getattr(mod, self.kernel_functions[1])(gy, keep, scale)

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        return self.backward(mod, out[0], out[1], inputs[4])


@dataclass(frozen=True)
class DropoutCall(_MaskCall):
    """A dropout call: the input's shape and dtype."""

    op: ClassVar[str] = "dropout"
    functional: ClassVar[str] = "dropout"
    x_shape: tuple[int, ...]
    dtype: str

    def bench_params(self) -> dict[str, Any] | None:
        # the drop probability is not part of the call's key
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return {**nchw(self.x_shape), "p": 0.5} if 2 <= len(self.x_shape) <= 4 else None


@dataclass(frozen=True)
class Dropout2dCall(_MaskCall):
    """A dropout2d call: x seen as (planes, H*W), dtype."""

    kernel_functions: ClassVar[tuple[str, ...]] = ("channel_forward", "channel_backward")
    op: ClassVar[str] = "dropout2d"
    functional: ClassVar[str] = "dropout2d"
    x_shape: tuple[int, int]
    dtype: str

    def bench_params(self) -> dict[str, Any]:
        # one row per plane; (N=rows, C=1, H=H*W) gives the same kernel call
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        rows, hw = self.x_shape
        return {"N": rows, "C": 1, "H": hw, "W": 1, "p": 0.5}


@dataclass(frozen=True)
class GaussianDropoutCall(_DropCall):
    """A gaussian_dropout call: the input's shape and dtype."""

    kernel_functions: ClassVar[tuple[str, ...]] = ("gaussian_forward", "gaussian_backward")
    op: ClassVar[str] = "gaussian_dropout"
    functional: ClassVar[str] = "gaussian_dropout"
    x_shape: tuple[int, ...]
    dtype: str

    def forward(self, mod: ModuleType, x, seed, step, sigma) -> Any:
        """The forward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.gaussian_forward(x, seed, step, sigma)

    def backward(self, mod: ModuleType, gy, seed, step, sigma) -> Any:
        """The backward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.gaussian_backward(gy, seed, step, sigma)

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        return self.backward(mod, out, *inputs[1:])

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return {**nchw(self.x_shape), "sigma": 0.5} if 2 <= len(self.x_shape) <= 4 else None


_P = __name__
for _op in ("dropout", "dropout2d", "gaussian_dropout"):
    register(_op, "reference", f"{_P}.reference")
    register(_op, "philox-numba", f"{_P}.philox_numba")
    register(_op, "philox-cython", f"{_P}.philox_cy")
    # Numba first: it compiles for the host CPU (AVX-512 where present), measured faster
    set_rule(_op, lambda call: ["philox-numba", "philox-cython"])


# --- example calls and bench cases (kernels/examples.py) ---------------------------------


def _plane_mask_bytes(p: dict, direction: str) -> int:
    n = ex.elems(p)
    mask = p["N"] * p["C"]  # one keep flag per (image, channel) plane
    return ex.per_direction(2 * ex.F32 * n + mask, 2 * ex.F32 * n + mask, direction)


def _gauss_bytes(p: dict, direction: str) -> int:
    n = ex.F32 * ex.elems(p)  # the noise is regenerated from the counter, never stored
    return ex.per_direction(2 * n, 2 * n, direction)


def _gauss_torch(tF: Any, T: dict, p: dict):
    # PyTorch has no Gaussian dropout op: the same computation, x * N(1, sigma^2)
    x = T["x"]
    return x * (1 + p["sigma"] * x.new_empty(x.shape).normal_())


_NCHW = {"N": 64, "C": 64, "H": 32, "W": 32}

# PyTorch draws other random numbers: no oracle beyond reference for the examples
DropoutCall.examples = (
    ex.Example(lambda F, x: F.dropout(x, 0.4), ((3, 4, 5),), seed=11, torch=False),
)
DropoutCall.determinism = ex.Example(lambda F, x: F.dropout(x, 0.4), ((4, 6, 12, 12),), seed=0)
DropoutCall.bench = ex.BenchCase(
    "bytes", ({**_NCHW, "p": 0.5},), ex.nchw_label, ex.x_input,
    lambda F, T, p: F.dropout(T["x"], p["p"], training=True), ex.one_per_element, ex.mask_bytes,
    seeded=True,
)  # fmt: skip

Dropout2dCall.examples = (
    ex.Example(lambda F, x: F.dropout2d(x, 0.4), ((3, 4, 5, 2),), seed=11, torch=False),
)
Dropout2dCall.determinism = ex.Example(lambda F, x: F.dropout2d(x, 0.4), ((4, 6, 12, 12),), seed=0)
Dropout2dCall.bench = ex.BenchCase(
    "bytes", ({**_NCHW, "p": 0.5},), ex.nchw_label, ex.x_input,
    lambda F, T, p: F.dropout2d(T["x"], p["p"], training=True), ex.one_per_element,
    _plane_mask_bytes, seeded=True,
)  # fmt: skip

GaussianDropoutCall.examples = (
    ex.Example(lambda F, x: F.gaussian_dropout(x, 0.4), ((3, 4, 5),), seed=11, torch=False),
)
GaussianDropoutCall.determinism = ex.Example(
    lambda F, x: F.gaussian_dropout(x, 0.4), ((4, 6, 12, 12),), seed=0
)
GaussianDropoutCall.bench = ex.BenchCase(
    "bytes", ({**_NCHW, "sigma": 0.5},),
    lambda p: f"N{p['N']} C{p['C']} {p['H']}x{p['W']} sigma{p['sigma']}", ex.x_input,
    lambda F, T, p: F.gaussian_dropout(T["x"], p["sigma"], training=True), ex.one_per_element,
    _gauss_bytes, torch_call=_gauss_torch, seeded=True,
)  # fmt: skip
