"""Problem 3: parameters and FLOPs of a 3x3 convolution vs a depthwise separable one.

Input: a 3-channel 224x224 image; output: 4 channels. The traditional layer is
``Conv2d(3, 4, 3)``; the separable one is a depthwise ``Conv2d(3, 3, 3, groups=3)``
followed by a pointwise ``Conv2d(3, 4, 1)``. Parameter counts come from the layers' own
parameters; FLOPs from running the layers on the image (padding 1, so every layer keeps
224x224) and counting one multiply and one add per weight per output pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import manual_seed, nn, no_grad
from ..tensor import Tensor
from ._common import figure, save, table

C_IN, C_OUT, K, SIZE = 3, 4, 3, 224


@dataclass
class Result:
    """What ``separable-params`` (homework problem 3) computes: the numbers it prints and plots."""

    params: dict[str, int]  # weights only / with biases, per design
    flops: dict[str, int]  # multiply-adds x 2 on one 224x224 image, weights only
    macs: dict[str, int]
    out_shapes: dict[str, tuple[int, ...]]
    layer_params: dict[str, int]  # weights per layer of each design


def _count(module: nn.Module, with_bias: bool) -> int:
    return sum(p.size for name, p in module.named_parameters() if with_bias or "bias" not in name)


def _macs(conv: nn.Conv2d, out: Tensor) -> int:
    # each output element is a dot product of length (C_in / groups) * kH * kW
    per_out = (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]
    return int(out.size * per_out)


def run(seed: int = 0) -> Result:
    """Run ``separable-params`` (problem 3) with the given seed and options; returns its
    :class:`Result`.
    """
    manual_seed(seed)
    standard = nn.Conv2d(C_IN, C_OUT, K, padding=1)
    # biases on the pointwise layer only: everything is linear, so one bias per output
    # channel is all the separable layer needs (the homework's 43)
    depthwise = nn.Conv2d(C_IN, C_IN, K, padding=1, groups=C_IN, bias=False)
    pointwise = nn.Conv2d(C_IN, C_OUT, 1)
    separable = nn.Sequential(depthwise, pointwise)
    both_bias = nn.Sequential(
        nn.Conv2d(C_IN, C_IN, K, padding=1, groups=C_IN), nn.Conv2d(C_IN, C_OUT, 1)
    )

    x = Tensor(np.random.default_rng(seed).standard_normal((1, C_IN, SIZE, SIZE)), dtype=np.float32)
    with no_grad():
        y_std = standard(x)
        y_dw = depthwise(x)
        y_sep = pointwise(y_dw)
    macs = {
        "standard": _macs(standard, y_std),
        "depthwise": _macs(depthwise, y_dw),
        "pointwise": _macs(pointwise, y_sep),
    }
    macs["separable"] = macs["depthwise"] + macs["pointwise"]
    return Result(
        params={
            "standard": _count(standard, False),
            "standard+bias": _count(standard, True),
            "separable": _count(separable, False),
            "separable+bias": _count(separable, True),
            "separable+both biases": _count(both_bias, True),
        },
        flops={k: 2 * v for k, v in macs.items()},
        macs=macs,
        out_shapes={"standard": y_std.shape, "separable": y_sep.shape},
        layer_params={
            "depthwise": _count(depthwise, False),
            "pointwise": _count(pointwise, False),
        },
    )


def report(r: Result) -> str:
    """The text ``tapegrad experiment separable-params`` prints for a :class:`Result`."""
    p, f = r.params, r.flops
    rows = [
        ["Conv2d(3, 4, 3)", p["standard"], p["standard+bias"], f"{f['standard']:,}"],
        [
            "depthwise Conv2d(3, 3, 3, groups=3)",
            r.layer_params["depthwise"],
            "",
            f"{f['depthwise']:,}",
        ],
        ["pointwise Conv2d(3, 4, 1)", r.layer_params["pointwise"], "", f"{f['pointwise']:,}"],
        ["depthwise separable (total)", p["separable"], p["separable+bias"], f"{f['separable']:,}"],
    ]
    return "\n".join(
        [
            f"input 1x{C_IN}x{SIZE}x{SIZE}, 3x3 kernels, padding 1 -> output "
            f"{r.out_shapes['standard']} (standard) and {r.out_shapes['separable']} (separable)",
            table(["layer", "weights", "with biases", "FLOPs (2 x MACs)"], rows),
            f"weights: {p['standard']} vs {p['separable']} "
            f"({p['standard'] / p['separable']:.2f}x fewer); with biases "
            f"{p['standard+bias']} vs {p['separable+bias']} "
            f"({p['separable+both biases']} with a bias on the depthwise layer too)",
            f"FLOPs: {f['standard']:,} vs {f['separable']:,} "
            f"({f['standard'] / f['separable']:.2f}x fewer)",
        ]
    )


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``separable-params`` to the PNG file ``path``."""
    fig, ax = figure(1, 2, (9, 3.6))
    labels = ["standard", "separable"]
    colors = ["C0", "C1"]
    ax[0, 0].bar(labels, [r.params["standard"], r.params["separable"]], color=colors)
    ax[0, 0].bar(
        labels,
        [
            r.params["standard+bias"] - r.params["standard"],
            r.params["separable+bias"] - r.params["separable"],
        ],
        bottom=[r.params["standard"], r.params["separable"]],
        color="0.7",
        label="biases",
    )
    for i, k in enumerate(labels):
        nb = r.params[k + "+bias"] - r.params[k]
        ax[0, 0].text(i, r.params[k + "+bias"] + 1, f"{r.params[k]} (+{nb})", ha="center")
    ax[0, 0].set(title="learnable parameters", ylabel="count")
    ax[0, 0].legend()
    ax[0, 1].bar(labels, [r.flops["standard"] / 1e6, r.flops["separable"] / 1e6], color=colors)
    ax[0, 1].set(title="FLOPs on one 3x224x224 image", ylabel="MFLOPs")
    save(fig, path)
