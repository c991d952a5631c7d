"""tapegrad: a CPU deep-learning framework with tape-based autograd and compiled kernels.

import tapegrad as tg
x = tg.randn(2, 3, requires_grad=True)
(x * x).sum().backward()
"""

from __future__ import annotations

from . import kernels
from .autograd import AnomalyError, Function, detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .creation import (
    arange,
    manual_seed,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from .gradcheck import GradcheckError, gradcheck
from .kernels import get_num_threads, retain_freed_memory, set_num_threads
from .tensor import Tensor

__version__ = "0.1.0"

float32 = "float32"
float64 = "float64"


def __getattr__(name: str):
    # heavier submodules load on first use so ``import tapegrad`` stays fast
    import importlib

    if name in (
        "nn",
        "optim",
        "data",
        "zoo",
        "checkpoint",
        "viz",
        "bench",
        "train",
        "lr_scheduler",
        "zoo_torch",
        "distributed",
        "experiments",
        "onnx",
        "inference",
        "interop",
    ):
        return importlib.import_module(f".{name}", __name__)
    if name in ("from_dlpack", "from_torch"):
        return getattr(importlib.import_module(".interop", __name__), name)
    if name in ("save", "load"):
        return getattr(importlib.import_module(".checkpoint", __name__), name)
    raise AttributeError(f"module 'tapegrad' has no attribute {name!r}")


__all__ = [
    "AnomalyError",
    "Function",
    "GradcheckError",
    "Tensor",
    "arange",
    "detect_anomaly",
    "enable_grad",
    "get_num_threads",
    "gradcheck",
    "is_grad_enabled",
    "kernels",
    "manual_seed",
    "no_grad",
    "ones",
    "ones_like",
    "rand",
    "randn",
    "retain_freed_memory",
    "set_num_threads",
    "tensor",
    "zeros",
    "zeros_like",
]
