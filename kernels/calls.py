"""The typed call record every kernel op declares: one place for a call's signature and
its kernel calls.

Each op with kernels declares, in its family's ``__init__`` next to the variant interface,
a frozen dataclass derived from :class:`KernelCall`: the call's shapes and arguments by
field name (``Conv2dCall(x_shape=..., w_shape=..., stride=..., ...)``) and the op's
forward and backward kernel calls, written once. The op (``tapegrad.ops``) runs the real
call through them; autotune's trials run through them too (``trial``), so the two cannot
drift apart. Selection rules (``set_rule``), ``bench`` and the autotune cache read the
record by field name; the cache keys on :meth:`KernelCall.key`, which names the op, the
record's ``version`` and every field, so a record that gains a field is a new version
rather than a silently orphaned key.

Records hold shapes, dtypes and arguments only (hashable, cheap to compare); the arrays
travel beside them as ``inputs``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, ClassVar

from .examples import BenchCase, Example

_DECLARED: dict[str, type[KernelCall]] = {}


def declared(op: str) -> type[KernelCall] | None:
    """The record class declared for ``op`` (None for an op without one)."""
    return _DECLARED.get(op)


def declarations() -> dict[str, type[KernelCall]]:
    """Every declared op name -> its record class."""
    return dict(_DECLARED)


@dataclasses.dataclass(frozen=True)
class KernelCall:
    """Base of an op's call record (a frozen dataclass; subclasses add the fields).

    Class attributes a subclass sets:

    ``op``
        the registry op name (``"conv2d"``).
    ``version``
        bumped when the fields change meaning; part of :meth:`key`.
    ``functional``
        the name of the ``tapegrad.nn.functional`` (and ``torch.nn.functional``) function
        that runs the op, for tables that call it by name (``bench``, the fuzz tests).
    ``kernel_functions``
        the functions every variant module of the op provides (the family's documented
        interface); ``tapegrad.kernels.register`` checks a user's variant for them.
    ``examples``, ``determinism``, ``bench``
        the op's example calls and its ``bench`` case (:mod:`.examples`): the fuzz,
        hardening, determinism and bench tables derive the op's rows from them.

    Methods a subclass writes once:

    ``forward(mod, *inputs)``
        the forward kernel call with variant module ``mod``.
    ``backward_trial(mod, out, inputs, needs)``
        the backward kernel call as autotune times it: ``out`` is what ``forward``
        returned (its output stands in for the output gradient), ``needs`` the
        ``needs_input_grad`` flags. Return ``NotImplemented`` when the call has no
        backward kernel (then only the forward is timed).
    ``bench_params()``
        the ``bench`` case parameters for this call (``N``, ``C``, ``H``, ``W``, ...).
    """

    op: ClassVar[str] = ""
    version: ClassVar[int] = 1
    functional: ClassVar[str] = ""
    kernel_functions: ClassVar[tuple[str, ...]] = ("forward", "backward")
    examples: ClassVar[tuple[Example, ...]] = ()
    determinism: ClassVar[Example | None] = None
    bench: ClassVar[BenchCase | None] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.__dict__.get("op"):
            _DECLARED.setdefault(cls.op, cls)

    # --- identity ------------------------------------------------------------------

    def key(self) -> str:
        """A stable text key: ``op/vN(field=value, ...)`` (the autotune cache's and the
        generated rules' key for this call)."""
        parts = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.op}/v{self.version}({parts})"

    def size(self) -> float:
        """log2 of the element count of the shapes (the fields named ``*_shape``)."""
        total = 0
        for f in dataclasses.fields(self):
            if f.name.endswith("_shape"):
                total += math.prod(getattr(self, f.name))
        return math.log2(total) if total > 0 else 0.0

    def fields(self) -> dict[str, Any]:
        """The record as a dict of field name -> value."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # --- the kernel calls ------------------------------------------------------------

    def forward(self, mod: ModuleType, *inputs: Any) -> Any:
        """The forward kernel call with variant module ``mod``; subclasses write it.

        Raises
        ------
        NotImplementedError
            If the subclass declares no forward kernel call.
        """
        raise NotImplementedError(f"{type(self).__name__} declares no forward kernel call")

    def backward_trial(
        self, mod: ModuleType, out: Any, inputs: Sequence[Any], needs: Sequence[bool]
    ) -> Any:
        """The backward kernel call as autotune times it; ``NotImplemented`` (this default)
        when the op has no backward kernel.
        """
        return NotImplemented

    def trial(
        self, inputs: Sequence[Any], needs: Sequence[bool], training: bool
    ) -> Callable[[ModuleType], object]:
        """What autotune times for this call: the forward, and with ``training`` the
        backward on the forward's output."""
        if not training:
            return lambda mod: self.forward(mod, *inputs)
        needs = (*needs, False, False, False, False)  # Function.apply may pass fewer inputs

        def run(mod: ModuleType) -> None:
            self.backward_trial(mod, self.forward(mod, *inputs), inputs, needs)

        return run

    def has_backward(self) -> bool:
        """Whether this call has a backward kernel for autotune to time."""
        return type(self).backward_trial is not KernelCall.backward_trial

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call (None: not a bench case)."""
        return None


def pair(v: Any) -> tuple[int, ...]:
    """A tuple of Python ints (records hold hashable, canonical values)."""
    if type(v) is tuple:  # an array's shape, a checked stride: kept when already canonical
        for e in v:
            if type(e) is not int:
                break
        else:
            return v
    return tuple(map(int, v))  # map: no generator frame on every op's call record


def nchw(shape: Sequence[int]) -> dict[str, int]:
    """``N, C, H, W`` bench parameters for an array shape of rank 2 to 4 (missing axes 1)."""
    n, c, *rest = shape
    h, w = ((*rest, 1, 1)[:2]) if len(rest) < 2 else rest[-2:]
    return {"N": int(n), "C": int(c), "H": int(h), "W": int(w)}
