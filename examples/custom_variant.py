"""A ReLU kernel variant of your own, checked and benchmarked against the built-ins.

    python examples/custom_variant.py [--quick]

A variant is a module providing its family's interface (for ReLU, documented in
tapegrad.kernels.activation: relu_forward(x) -> (y, mask), relu_backward(g, mask) -> gx).
This script registers itself as the variant "maximum-numpy" of op "relu", checks it
against "reference", then runs `tapegrad bench` on it beside the built-in variants.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = max(x, 0) and the uint8 mask of x > 0 (NaN gives 0 in both)."""
    mask = (x > 0).view(np.uint8)
    return np.maximum(x, x.dtype.type(0)) * mask, mask


def relu_backward(g: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """g where the mask is set, 0 elsewhere."""
    return g * mask


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes and 3 repeats")
    args = p.parse_args(argv)

    import tapegrad as tg
    import tapegrad.kernels as K
    import tapegrad.nn.functional as F
    from tapegrad.bench.cli import run
    from tapegrad.kernels.registry import register

    # register this file as a module the registry can import by name
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    register("relu", "maximum-numpy", Path(__file__).stem)
    print("relu variants:", K.variants("relu"))

    x = tg.randn(4, 8, 5, 5, requires_grad=True)
    grads = {}
    for name in ("reference", "maximum-numpy"):
        x.grad = None
        with K.use(relu=name):
            y = F.relu(x)
            (y * y).sum().backward()
        grads[name] = (y.numpy(), x.grad.numpy())
    same = all(np.array_equal(a, b) for a, b in zip(grads["reference"], grads["maximum-numpy"]))
    print("maximum-numpy agrees with reference:", same)
    if not same:
        return 1

    bench_args = ["--ops", "relu", "--no-progress"]
    bench_args += ["--quick", "--repeat", "3"] if args.quick else []
    return run(bench_args)  # 1 if any variant disagrees with reference


if __name__ == "__main__":
    raise SystemExit(main())
