"""What autotune times for a kernel op's call: :func:`resolve` wraps ``K.resolve``.

A call recorded for a backward (training) is tuned on its forward and its backward, as
a training step runs them; an inference call on its forward alone. The two are kept
apart in autotune's cache: the variant with the fastest forward is not always the one
with the fastest forward + backward (col2im-cython vs col2im-numba on a conv_transpose2d
layer measured 0.9x / 1.3x).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from types import ModuleType
from typing import Any

import tapegrad.kernels as K

from ..autograd import Context


def resolve(
    ctx: Context,
    op: str,
    signature: Hashable,
    forward: Callable[[ModuleType], Any],
    backward: Callable[[ModuleType, Any], object] | None = None,
) -> ModuleType:
    """The variant module for this call. ``forward(m)`` runs the forward kernel with module
    ``m``; ``backward(m, out)`` its backward, with ``out`` what ``forward`` returned (the
    output stands in for the output gradient: timing does not depend on the values)."""
    training = backward is not None and any(ctx.needs_input_grad)
    trial = forward
    if training:

        def trial(m: ModuleType) -> None:
            backward(m, forward(m))

    return K.resolve(op, signature, trial, training=training)
