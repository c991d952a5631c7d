"""The variant module for a kernel op's call: :func:`resolve` wraps ``K.resolve``.

An op builds its call record (``Conv2dCall.of(x, w, ...)``, declared with the family's
kernels) and passes it with the call's input arrays. Autotune times the record's own
kernel calls (:meth:`~tapegrad.kernels.calls.KernelCall.trial`), the ones the op then runs
for real.

A call recorded for a backward (training) is tuned on its forward and its backward, as
a training step runs them; an inference call on its forward alone. The two are kept
apart in autotune's cache: the variant with the fastest forward is not always the one
with the fastest forward + backward (col2im-cython vs col2im-numba on a conv_transpose2d
layer measured 0.9x / 1.3x).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import tapegrad.kernels as K
from tapegrad.kernels.calls import KernelCall

from ..autograd import Context

_ready = [False]


def resolve(ctx: Context, call: KernelCall, *inputs: Any) -> ModuleType:
    """The variant module for ``call`` with input arrays ``inputs`` (as ``call.forward``
    takes them). The first call applies the kernels' process settings
    (:func:`tapegrad.kernels.init`) before any kernel runs."""
    if not _ready[0]:
        K.init()
        _ready[0] = True
    needs = ctx.needs_input_grad
    training = True in needs and call.has_backward()
    # the trial closure is only for autotune's timing: not built on the common path
    trial = call.trial(inputs, needs, training) if K.autotune_enabled() else None
    return K.resolve(call.op, call, trial, training=training)
