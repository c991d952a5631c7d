"""Pointwise activation kernels: LeakyReLU, ELU, GELU (exact and tanh), SiLU, Hardswish,
Hardsigmoid, Softplus and Mish, one kernel op each, with PyTorch's formulas and its NaN and
infinity behaviour.

Every op of the family is one read and one write pass each way: the forward writes ``y``
from ``x``; the backward recomputes the derivative from ``x`` while it reads ``g``, so
nothing but the input is kept for the backward. Compiled variants compute in float64 and
round once to the array's dtype.

Variant interface (``x``/``g`` C-contiguous float32/float64 of one shape, any rank; ``kind``
one of the ``KIND_*`` codes below; ``a``, ``b`` the activation's two float parameters)::

    pointwise_forward(kind, x, a, b) -> y          y = f(x), same shape and dtype
    pointwise_backward(kind, g, x, a, b) -> gx     gx = g * f'(x), same shape and dtype

``reference.derivative(kind, x, a, b)`` is each activation's derivative as a NumPy formula
(where the backward zeroes a gradient outright, as PyTorch does outside a hard clamp,
``reference.pointwise_backward`` says so).

Each op declares its call record here: the input's shape and dtype plus the activation's
arguments by name (``LeakyReluCall(x_shape, dtype, negative_slope)``). A record validates
its arguments (:meth:`PointwiseCall.of`, the one check every entry point passes through)
and derives the cases other tables need from its fields: ``bench`` (:meth:`bench_params`),
the fuzz tests (:meth:`PointwiseCall.fuzz_arguments`) and the bad-input table
(:meth:`PointwiseCall.bad_arguments`). ``elementwise = True`` marks the family's records
for those tables.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from ..calls import KernelCall, nchw, pair
from ..registry import register, set_rule

# kind codes shared by every variant (fused_cy.pyx mirrors them in a cdef enum)
KIND_LEAKY_RELU = 0
KIND_ELU = 1
KIND_GELU = 2
KIND_GELU_TANH = 3
KIND_SILU = 4
KIND_HARDSWISH = 5
KIND_HARDSIGMOID = 6
KIND_SOFTPLUS = 7
KIND_MISH = 8


def _real(fn: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}: {name} must be a real number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PointwiseCall(KernelCall):
    """Base of the family's records: the input's shape and dtype; subclasses add the
    activation's arguments as fields (float fields, or str fields listed in ``choices``).
    """

    kernel_functions: ClassVar[tuple[str, ...]] = ("pointwise_forward", "pointwise_backward")
    elementwise: ClassVar[bool] = True
    takes_inplace: ClassVar[bool] = True  # PyTorch's function has inplace= (no effect here)
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    x_shape: tuple[int, ...]
    dtype: str

    @classmethod
    def arguments(cls) -> dict[str, Any]:
        """The activation's arguments (the fields after ``x_shape`` and ``dtype``) and their
        defaults, in PyTorch's order."""
        return {
            f.name: f.default for f in dataclasses.fields(cls) if f.name not in ("x_shape", "dtype")
        }

    @classmethod
    def of(cls, x: Any, **kwargs: Any) -> PointwiseCall:
        """The record of a call on array ``x`` with the activation's keyword arguments,
        validated: the one check every entry point (functional, ``Function.apply``, layer)
        passes through.

        Raises
        ------
        TypeError
            ``x`` is not a float32/float64 array, an argument has the wrong type, or an
            argument is unknown.
        ValueError
            A string argument is not one of its choices.
        """
        fn = cls.functional
        dtype = getattr(x, "dtype", None)
        if dtype is None or dtype.kind != "f" or dtype.itemsize not in (4, 8):
            got = f"{dtype} (shape {x.shape})" if dtype is not None else type(x).__name__
            raise TypeError(f"{fn}: input must be float32 or float64, got {got}")
        values = cls.check_arguments(**kwargs)
        return cls(pair(x.shape), dtype.str, **values)

    @classmethod
    def check_arguments(cls, **kwargs: Any) -> dict[str, Any]:
        """The activation's arguments validated, defaults filled in (a layer checks its
        constructor's arguments with this).

        Raises
        ------
        TypeError
            An argument is unknown or has the wrong type.
        ValueError
            A string argument is not one of its choices.
        """
        fn = cls.functional
        args = cls.arguments()
        if cls.takes_inplace and "inplace" in kwargs:
            kwargs = dict(kwargs)
            inplace = kwargs.pop("inplace")
            if not isinstance(inplace, bool):
                raise TypeError(f"{fn}: inplace must be a bool, got {inplace!r}")
        unknown = sorted(set(kwargs) - set(args))
        if unknown:
            raise TypeError(f"{fn}: unexpected argument {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, default in args.items():
            value = kwargs.get(name, default)
            if name in cls.choices:
                if not isinstance(value, str):
                    raise TypeError(f"{fn}: {name} must be a str, got {value!r}")
                if value not in cls.choices[name]:
                    allowed = " or ".join(repr(c) for c in cls.choices[name])
                    raise ValueError(f"{fn}: {name} must be {allowed}, got {value!r}")
                values[name] = value
            else:
                values[name] = _real(fn, name, value)
        return values

    # --- what the kernels see -------------------------------------------------------

    def kind(self) -> int:
        """The kernel's kind code (``KIND_*``)."""
        raise NotImplementedError

    def params(self) -> tuple[float, float]:
        """The kernel's two float parameters ``(a, b)``."""
        return 0.0, 0.0

    def forward(self, mod: ModuleType, x: Any) -> Any:
        """y = f(x)"""
        return mod.pointwise_forward(self.kind(), x, *self.params())

    def backward(self, mod: ModuleType, g: Any, x: Any) -> Any:
        """gx = g * f'(x), one pass over g and x."""
        return mod.pointwise_backward(self.kind(), g, x, *self.params())

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it: the output stands in for the
        gradient (see ``KernelCall``)."""
        return self.backward(mod, out, inputs[0])

    # --- derived cases ----------------------------------------------------------------

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters: ``N, C, H, W`` plus the activation's arguments
        that differ from their defaults (None below rank 2 or above rank 4)."""
        if not 2 <= len(self.x_shape) <= 4:
            return None
        args = {k: getattr(self, k) for k, d in self.arguments().items() if getattr(self, k) != d}
        return {**nchw(self.x_shape), **args}

    @classmethod
    def fuzz_arguments(cls) -> list[dict[str, Any]]:
        """Keyword-argument sets for the fuzz tests: the defaults, each argument alone at
        other valid values (negative, zero, large, each choice) and one invalid value of
        each (a string for a number, an unknown choice)."""
        out: list[dict[str, Any]] = [{}]
        for name in cls.arguments():
            if name in cls.choices:
                out += [{name: c} for c in cls.choices[name]] + [{name: "bogus"}]
            else:
                out += [{name: v} for v in (-0.5, 0.0, 2.0, 30.0)] + [{name: "0.1"}]
        return out

    @classmethod
    def bad_arguments(cls) -> list[tuple[str, Any, type, tuple[str, ...]]]:
        """``(argument, value, exception, words the message contains)`` rows for the
        bad-input table, two per argument (one for ``inplace``)."""
        rows: list[tuple[str, Any, type, tuple[str, ...]]] = []
        for name in cls.arguments():
            if name in cls.choices:
                rows.append((name, "exact", ValueError, ("'exact'", repr(cls.choices[name][0]))))
                rows.append((name, 1, TypeError, ("str", "1")))
            else:
                rows.append((name, "0.1", TypeError, ("real number", "'0.1'")))
                rows.append((name, True, TypeError, ("True",)))
        if cls.takes_inplace:
            rows.append(("inplace", 1, TypeError, ("bool", "1")))
        return rows


@dataclass(frozen=True)
class LeakyReluCall(PointwiseCall):
    """leaky_relu: ``x if x > 0 else negative_slope * x``."""

    op: ClassVar[str] = "leaky_relu"
    functional: ClassVar[str] = "leaky_relu"
    negative_slope: float = 0.01

    def kind(self) -> int:
        """``KIND_LEAKY_RELU``"""
        return KIND_LEAKY_RELU

    def params(self) -> tuple[float, float]:
        """``(negative_slope, 0)``"""
        return self.negative_slope, 0.0


@dataclass(frozen=True)
class EluCall(PointwiseCall):
    """elu: ``x if x > 0 else alpha * (exp(x) - 1)``."""

    op: ClassVar[str] = "elu"
    functional: ClassVar[str] = "elu"
    alpha: float = 1.0

    def kind(self) -> int:
        """``KIND_ELU``"""
        return KIND_ELU

    def params(self) -> tuple[float, float]:
        """``(alpha, 0)``"""
        return self.alpha, 0.0


@dataclass(frozen=True)
class GeluCall(PointwiseCall):
    """gelu: ``x * Phi(x)`` (``approximate='none'``) or its tanh approximation."""

    op: ClassVar[str] = "gelu"
    functional: ClassVar[str] = "gelu"
    takes_inplace: ClassVar[bool] = False
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"approximate": ("none", "tanh")}
    approximate: str = "none"

    def kind(self) -> int:
        """``KIND_GELU`` or ``KIND_GELU_TANH``"""
        return KIND_GELU_TANH if self.approximate == "tanh" else KIND_GELU


@dataclass(frozen=True)
class SiluCall(PointwiseCall):
    """silu: ``x * sigmoid(x)``."""

    op: ClassVar[str] = "silu"
    functional: ClassVar[str] = "silu"

    def kind(self) -> int:
        """``KIND_SILU``"""
        return KIND_SILU


@dataclass(frozen=True)
class HardswishCall(PointwiseCall):
    """hardswish: ``x * clamp(x + 3, 0, 6) / 6``."""

    op: ClassVar[str] = "hardswish"
    functional: ClassVar[str] = "hardswish"

    def kind(self) -> int:
        """``KIND_HARDSWISH``"""
        return KIND_HARDSWISH


@dataclass(frozen=True)
class HardsigmoidCall(PointwiseCall):
    """hardsigmoid: ``clamp(x + 3, 0, 6) / 6``."""

    op: ClassVar[str] = "hardsigmoid"
    functional: ClassVar[str] = "hardsigmoid"

    def kind(self) -> int:
        """``KIND_HARDSIGMOID``"""
        return KIND_HARDSIGMOID


@dataclass(frozen=True)
class SoftplusCall(PointwiseCall):
    """softplus: ``log(1 + exp(beta * x)) / beta``, and ``x`` where ``beta * x > threshold``."""

    op: ClassVar[str] = "softplus"
    functional: ClassVar[str] = "softplus"
    takes_inplace: ClassVar[bool] = False
    beta: float = 1.0
    threshold: float = 20.0

    def kind(self) -> int:
        """``KIND_SOFTPLUS``"""
        return KIND_SOFTPLUS

    def params(self) -> tuple[float, float]:
        """``(beta, threshold)``"""
        return self.beta, self.threshold


@dataclass(frozen=True)
class MishCall(PointwiseCall):
    """mish: ``x * tanh(softplus(x))``."""

    op: ClassVar[str] = "mish"
    functional: ClassVar[str] = "mish"

    def kind(self) -> int:
        """``KIND_MISH``"""
        return KIND_MISH


RECORDS: tuple[type[PointwiseCall], ...] = (
    LeakyReluCall,
    EluCall,
    GeluCall,
    SiluCall,
    HardswishCall,
    HardsigmoidCall,
    SoftplusCall,
    MishCall,
)

_P = __name__
for _rec in RECORDS:
    register(_rec.op, "reference", f"{_P}.reference")
    register(_rec.op, "fused-numba", f"{_P}.fused_numba")
    register(_rec.op, "fused-cython", f"{_P}.fused_cy")
    set_rule(_rec.op, lambda call: ["fused-numba", "fused-cython"])
