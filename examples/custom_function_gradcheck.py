"""Write an op as a tapegrad.Function and check its backward with gradcheck.

    python examples/custom_function_gradcheck.py [--quick]

Swish with a learnable scalar, swish(x) = x * sigmoid(beta * x): forward and backward side
by side, checked against float64 central differences; then a deliberately wrong backward,
which gradcheck must catch.
"""

from __future__ import annotations

import argparse

import numpy as np

import tapegrad as tg


class Swish(tg.Function):
    """x * sigmoid(beta * x) for x of any shape and beta of shape (1,)."""

    @staticmethod
    def forward(ctx, x: np.ndarray, beta: np.ndarray) -> np.ndarray:
        s = 1.0 / (1.0 + np.exp(-beta * x))
        ctx.save_for_backward(x, beta, s)
        return x * s

    @staticmethod
    def backward(ctx, grad: np.ndarray):
        x, beta, s = ctx.saved_arrays
        ds = s * (1.0 - s)
        gx = grad * (s + x * beta * ds) if ctx.needs_input_grad[0] else None
        gbeta = None
        if ctx.needs_input_grad[1]:
            gbeta = (grad * x * x * ds).sum().reshape(beta.shape)
        return gx, gbeta


class WrongSwish(Swish):
    """The same forward with a backward that drops the x * beta * s * (1 - s) term."""

    @staticmethod
    def backward(ctx, grad: np.ndarray):
        x, beta, s = ctx.saved_arrays
        return grad * s, None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smaller input")
    args = p.parse_args(argv)
    shape = (3, 4) if args.quick else (8, 16)

    tg.manual_seed(0)
    x = tg.randn(*shape, dtype=np.float64, requires_grad=True)
    beta = tg.tensor([1.5], dtype=np.float64, requires_grad=True)
    tg.gradcheck(lambda x, b: Swish.apply(x, b), [x, beta])
    print(f"Swish: gradcheck passed for x {shape} and beta (1,)")

    try:
        tg.gradcheck(lambda x: WrongSwish.apply(x, beta.detach()), [x])
    except tg.GradcheckError as err:
        print("WrongSwish: gradcheck caught it:", str(err).splitlines()[0][:100])
    else:
        print("WrongSwish: gradcheck did NOT catch the wrong backward")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
