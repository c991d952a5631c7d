"""tapegrad: a CPU deep-learning framework with tape-based autograd and compiled kernels.

import tapegrad as tg
x = tg.randn(2, 3, requires_grad=True)
(x * x).sum().backward()
"""

from __future__ import annotations

from . import kernels
from .autograd import (
    AnomalyError,
    Function,
    detect_anomaly,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
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
from .device import device
from .gradcheck import GradcheckError, gradcheck
from .kernels import get_num_threads, retain_freed_memory, set_num_threads
from .tensor import Tensor
from .tensor_functions import (
    abs,
    argmax,
    argmin,
    cat,
    chunk,
    clamp,
    clip,
    concat,
    eye,
    flatten,
    flip,
    from_numpy,
    full,
    full_like,
    gather,
    index_select,
    linspace,
    max,
    maximum,
    min,
    minimum,
    numel,
    pow,
    repeat_interleave,
    roll,
    scatter_add,
    split,
    stack,
    tile,
    where,
)

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
        "cuda",
        "utils",
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
    "abs",
    "arange",
    "argmax",
    "argmin",
    "cat",
    "chunk",
    "clamp",
    "clip",
    "concat",
    "detect_anomaly",
    "device",
    "enable_grad",
    "eye",
    "flatten",
    "flip",
    "from_numpy",
    "full",
    "full_like",
    "gather",
    "get_num_threads",
    "gradcheck",
    "index_select",
    "is_grad_enabled",
    "is_inference_mode_enabled",
    "inference_mode",
    "set_grad_enabled",
    "kernels",
    "linspace",
    "manual_seed",
    "max",
    "maximum",
    "min",
    "minimum",
    "no_grad",
    "numel",
    "ones",
    "ones_like",
    "pow",
    "rand",
    "randn",
    "repeat_interleave",
    "retain_freed_memory",
    "roll",
    "scatter_add",
    "set_num_threads",
    "split",
    "stack",
    "tensor",
    "tile",
    "where",
    "zeros",
    "zeros_like",
]
