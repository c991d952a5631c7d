"""Normalisation kernels: batch norm (per channel) and row norm (layer norm, group norm).

One module serves the ops ``batch_norm``, ``layer_norm`` and ``group_norm``. Statistics
are float64 (accumulated from values shifted by the first element, so a large mean does
not cancel the variance away); elementwise passes run in the input dtype.

Variant interface (float32/float64, C-contiguous, validated by ``tapegrad.ops.norm``)::

    bn_forward_train(x, w, b, eps, normalize_variance) -> (y, mean, invstd, var)
        x (N, C, S); w, b (C,) float64. Statistics per channel over (N, S): mean, the biased
        var, invstd = 1/sqrt(var + eps) (1 when not normalize_variance), all (C,) float64.
        y = (x - mean) * invstd * w + b.
    bn_forward_eval(x, scale, shift) -> y           y = x * scale[c] + shift[c]; scale, shift (C,)
    bn_backward(gy, x, mean, invstd, w, normalize_variance) -> (gx, gw, gb)
        The closed form (one fused pass per channel: two reductions, one elementwise pass):
        gb = sum gy, gw = sum gy * xhat, gx = w * invstd * (gy - gb/M - xhat * gw/M)
        (gx = w * (gy - gb/M) without variance normalisation); gw, gb (C,) float64.
    bn_relu_forward_train(x, w, b, eps, normalize_variance) -> (y, mean, invstd, var, mask)
        ``relu(bn_forward_train(...)[0])`` in the same pass, and the ReLU's uint8 mask (1 where
        not y <= 0: PyTorch's ReLU, NaN and -0.0 pass) (``batch_norm_relu``).
    bn_relu_backward(gy, mask, x, mean, invstd, w, normalize_variance) -> (gx, gw, gb)
        ``bn_backward`` of gy masked (+0.0 where mask is 0), the mask applied per channel
        in the same parallel region.
    The two ``bn_relu_*`` functions are optional for a user's variant: without them
    ``batch_norm_relu`` runs ``bn_forward_train``/``bn_backward`` and the ``bias_relu``
    epilogue around them.
    BN_BACKWARD_ADDS = True (optional): both backward functions take a last argument
    ``acc`` (None, or an array of x's shape and dtype) and return gx + acc: the gradient
    the tape already holds for x (a residual block's skip) added as gx is written, instead
    of in a separate pass (``tapegrad.autograd.pending_grad``).
    row_forward(x, w, b, eps) -> (y, mean, invstd)
        x (R, K): statistics per row; w, b (P, K) of x's dtype or None; row r uses affine row
        r % P (layer norm P = 1; group norm P = groups, weights expanded over the group).
    row_backward(gy, x, mean, invstd, w, need_affine) -> (gx, gw, gb)
        gw, gb (P, K) float64 sums over the rows sharing an affine row (None unless asked).

The call records: :class:`BatchNormTrainCall`, :class:`BatchNormEvalCall` (op
``batch_norm``), :class:`LayerNormCall`, :class:`GroupNormCall`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from .. import examples as ex
from ..calls import KernelCall, pair
from ..registry import register, set_rule

_BN_FUNCTIONS = ("bn_forward_train", "bn_forward_eval", "bn_backward")

SERIAL_BELOW = 1 << 18
"""Calls on fewer elements than this run on the calling thread in the ``fused-cython``
variant (every norm record's ``serial_below``): waking a sleeping member of the thread team
and waiting for it at the region's end costs about what a second thread saves on a pass
this short."""


@dataclass(frozen=True)
class BatchNormTrainCall(KernelCall):
    """A training-mode batch_norm call: x seen as (N, C, S), dtype, variance normalised."""

    serial_below: ClassVar[int] = SERIAL_BELOW
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "bn_forward_train",
        "bn_forward_eval",
        "bn_backward",
    )
    op: ClassVar[str] = "batch_norm"
    functional: ClassVar[str] = "batch_norm"
    training: ClassVar[bool] = True
    x_shape: tuple[int, int, int]
    dtype: str
    normalize_variance: bool

    @classmethod
    def of(cls, x3, normalize_variance) -> BatchNormTrainCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(pair(x3.shape), x3.dtype.str, bool(normalize_variance))

    def forward(self, mod: ModuleType, x3: Any, w: Any, b: Any, eps: float) -> Any:
        """(y, mean, invstd, var)"""
        return mod.bn_forward_train(x3, w, b, eps, self.normalize_variance)

    def backward(self, mod: ModuleType, gy, x3, mean, invstd, w, acc=None) -> Any:
        """(gx, gw, gb); with ``acc`` (a variant that ``adds_into_gx``), gx + acc."""
        if acc is None:
            return mod.bn_backward(gy, x3, mean, invstd, w, self.normalize_variance)
        return mod.bn_backward(gy, x3, mean, invstd, w, self.normalize_variance, acc)

    @staticmethod
    def adds_into_gx(mod: ModuleType) -> bool:
        """Whether variant ``mod``'s backward functions take ``acc`` (optional for a user's
        variant: the op adds the tape's pending gradient itself otherwise)."""
        return bool(getattr(mod, "BN_BACKWARD_ADDS", False))

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        return self.backward(mod, out[0], inputs[0], out[1], out[2], inputs[1])

    @staticmethod
    def fuses_relu(mod: ModuleType) -> bool:
        """Whether variant ``mod`` runs batch norm + ReLU as one kernel pass each way
        (its optional ``bn_relu_*`` functions)."""
        return hasattr(mod, "bn_relu_forward_train") and hasattr(mod, "bn_relu_backward")

    def forward_relu(self, mod: ModuleType, x3: Any, w: Any, b: Any, eps: float) -> Any:
        """(y, mean, invstd, var, mask): the forward with the ReLU in the same pass."""
        return mod.bn_relu_forward_train(x3, w, b, eps, self.normalize_variance)

    def backward_relu(self, mod: ModuleType, gy, mask, x3, mean, invstd, w, acc=None) -> Any:
        """(gx, gw, gb) of the output gradient ``gy`` masked by the ReLU's ``mask``; with
        ``acc``, gx + acc."""
        nv = self.normalize_variance
        if acc is None:
            return mod.bn_relu_backward(gy, mask, x3, mean, invstd, w, nv)
        return mod.bn_relu_backward(gy, mask, x3, mean, invstd, w, nv, acc)

    def bench_params(self) -> dict[str, Any]:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return {**_nchw_of_ncs(self.x_shape), "mode": "train"}


@dataclass(frozen=True)
class BatchNormEvalCall(KernelCall):
    """An eval-mode batch_norm call (an affine map per channel): x as (N, C, S), dtype."""

    serial_below: ClassVar[int] = SERIAL_BELOW
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "bn_forward_train",
        "bn_forward_eval",
        "bn_backward",
    )
    op: ClassVar[str] = "batch_norm"
    training: ClassVar[bool] = False
    x_shape: tuple[int, int, int]
    dtype: str

    @classmethod
    def of(cls, x3) -> BatchNormEvalCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(pair(x3.shape), x3.dtype.str)

    def forward(self, mod: ModuleType, x3: Any, scale: Any, shift: Any) -> Any:
        """The forward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.bn_forward_eval(x3, scale, shift)

    def bench_params(self) -> dict[str, Any]:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return {**_nchw_of_ncs(self.x_shape), "mode": "eval"}


def _nchw_of_ncs(shape: tuple[int, int, int]) -> dict[str, int]:
    n, c, hw = shape
    side = math.isqrt(hw)
    h, w = (side, side) if side * side == hw else (hw, 1)
    return {"N": n, "C": c, "H": h, "W": w}


class RowNormCall(KernelCall):
    """The row-norm kernel calls shared by layer norm and group norm (x seen as (R, K))."""

    serial_below: ClassVar[int] = SERIAL_BELOW
    kernel_functions: ClassVar[tuple[str, ...]] = ("row_forward", "row_backward")

    def forward(self, mod: ModuleType, x2: Any, w: Any, b: Any, eps: float) -> Any:
        """(y, mean, invstd)"""
        return mod.row_forward(x2, w, b, eps)

    def backward(self, mod: ModuleType, gy, x2, mean, invstd, w, need_affine: bool) -> Any:
        """(gx, gw, gb)"""
        return mod.row_backward(gy, x2, mean, invstd, w, need_affine)

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        x2, w = inputs[0], inputs[1]
        return self.backward(mod, out[0], x2, out[1], out[2], w, any(needs[1:3]))


@dataclass(frozen=True)
class LayerNormCall(RowNormCall):
    """A layer_norm call: x as (rows, K) with K the normalised size, dtype, affine."""

    op: ClassVar[str] = "layer_norm"
    functional: ClassVar[str] = "layer_norm"
    x_shape: tuple[int, int]
    dtype: str
    affine: bool

    @classmethod
    def of(cls, x2, affine) -> LayerNormCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(pair(x2.shape), x2.dtype.str, bool(affine))

    def bench_params(self) -> dict[str, Any]:
        # the kernel sees rows of K values; (N=rows, C=1, H=K) gives the same kernel call
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        rows, k = self.x_shape
        return {"N": rows, "C": 1, "H": k, "W": 1}


@dataclass(frozen=True)
class GroupNormCall(RowNormCall):
    """A group_norm call: x as (N * groups, C/groups * S), dtype, groups, affine."""

    op: ClassVar[str] = "group_norm"
    functional: ClassVar[str] = "group_norm"
    x_shape: tuple[int, int]
    dtype: str
    groups: int
    affine: bool

    @classmethod
    def of(cls, x2, groups, affine) -> GroupNormCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(pair(x2.shape), x2.dtype.str, int(groups), bool(affine))

    def bench_params(self) -> dict[str, Any]:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        rows, k = self.x_shape
        g = self.groups
        return {"N": rows // g, "C": g, "H": k, "W": 1, "groups": g}


_P = __name__
for _op in ("batch_norm", "layer_norm", "group_norm"):
    register(_op, "reference", f"{_P}.reference")
    register(_op, "fused-numba", f"{_P}.fused_numba")
    register(_op, "fused-cython", f"{_P}.fused_cy")
    set_rule(_op, lambda call: ["fused-numba", "fused-cython"])
# Batch norm: fused-cython first at 1 thread too (at more, one_team_order puts it first
# anyway). Its forward ran 10-20% ahead of fused-numba's on the zoo's shapes and its
# backward level, so a resnet8 step at 1 thread runs about a millisecond faster
# (benchmarks/results/bn-memory-speed.md, "1 thread" tables).
set_rule("batch_norm", lambda call: ["fused-cython", "fused-numba"])


# --- example calls and bench cases (kernels/examples.py) ---------------------------------


def _affine_build(p: dict, rng: Any, dtype: Any):
    arrays, _ = ex.x_input(p, rng, dtype)
    arrays["weight"] = (1 + 0.1 * rng.standard_normal(p["C"])).astype(dtype)
    arrays["bias"] = (0.1 * rng.standard_normal(p["C"])).astype(dtype)
    return arrays, ("x", "weight", "bias")


def _bn_build(p: dict, rng: Any, dtype: Any):
    arrays, grads = _affine_build(p, rng, dtype)
    arrays["running_mean"] = np.zeros(p["C"], dtype=dtype)
    arrays["running_var"] = np.ones(p["C"], dtype=dtype)
    return arrays, grads


def _bn_call(F: Any, T: dict, p: dict):
    # running statistics are plain arrays (tapegrad) or tensors without a gradient (PyTorch)
    rm, rv = T["running_mean"].data, T["running_var"].data
    training = p.get("mode", "train") == "train"
    return F.batch_norm(T["x"], rm, rv, T["weight"], T["bias"], training=training)


def _norm_flops(p: dict, direction: str) -> int:
    n = ex.elems(p)
    # train forward: sum, sum of squares (2 each), normalise and scale-shift (4) per element;
    # eval forward: one fused multiply-add; backward: two reductions and one fused pass
    return ex.per_direction(2 * n if p.get("mode") == "eval" else 8 * n, 8 * n, direction)


def _norm_bytes(p: dict, direction: str) -> int:
    n = ex.F32 * ex.elems(p)
    return ex.per_direction(2 * n, 3 * n, direction)  # read x write y; read gy, x, write gx


def _ln_build(p: dict, rng: Any, dtype: Any):
    shape = (p["C"], p["H"], p["W"])
    arrays = {
        "x": rng.standard_normal((p["N"], *shape)).astype(dtype),
        "weight": (1 + 0.1 * rng.standard_normal(shape)).astype(dtype),
        "bias": (0.1 * rng.standard_normal(shape)).astype(dtype),
    }
    return arrays, ("x", "weight", "bias")


def _ln_bytes(p: dict, direction: str) -> int:
    n = ex.F32 * ex.elems(p)
    affine = ex.F32 * ex.prod(p["C"], p["H"], p["W"])  # weight and bias of the normalised shape
    return ex.per_direction(2 * n + 2 * affine, 3 * n + 4 * affine, direction)


_NCHW = {"N": 64, "C": 64, "H": 32, "W": 32}

BatchNormTrainCall.examples = (
    ex.Example(
        lambda F, x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        ((4, 3, 3, 5), (3,), (3,)),
    ),
)
BatchNormTrainCall.determinism = ex.Example(
    lambda F, x: F.batch_norm(x, None, None, training=True), ((4, 6, 12, 12),)
)
BatchNormTrainCall.bench = ex.BenchCase(
    "bytes", ({**_NCHW, "mode": "train"}, {**_NCHW, "mode": "eval"}), ex.nchw_label,
    _bn_build, _bn_call, _norm_flops, _norm_bytes,
    directions=lambda p: ("forward",) if p.get("mode") == "eval" else ex.DIRECTIONS,
    aliases=("bn", "batchnorm"),
)  # fmt: skip

LayerNormCall.examples = (
    ex.Example(lambda F, x, w, b: F.layer_norm(x, (4, 5), w, b), ((3, 2, 4, 5), (4, 5), (4, 5))),
)
LayerNormCall.determinism = ex.Example(lambda F, x: F.layer_norm(x, (12, 12)), ((4, 6, 12, 12),))
LayerNormCall.bench = ex.BenchCase(
    "bytes", (dict(_NCHW),), ex.nchw_label, _ln_build,
    lambda F, T, p: F.layer_norm(T["x"], (p["C"], p["H"], p["W"]), T["weight"], T["bias"]),
    _norm_flops, _ln_bytes, aliases=("ln", "layernorm"),
)  # fmt: skip

GroupNormCall.examples = (
    ex.Example(lambda F, x, w, b: F.group_norm(x, 2, w, b), ((3, 4, 3, 5), (4,), (4,))),
)
GroupNormCall.determinism = ex.Example(lambda F, x: F.group_norm(x, 3), ((4, 6, 12, 12),))
GroupNormCall.bench = ex.BenchCase(
    "bytes", ({**_NCHW, "groups": 8},), ex.nchw_label, _affine_build,
    lambda F, T, p: F.group_norm(T["x"], p["groups"], T["weight"], T["bias"]),
    _norm_flops, _norm_bytes, aliases=("gn", "groupnorm"),
)  # fmt: skip
