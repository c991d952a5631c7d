"""Model zoo: small CNNs written with ``tapegrad.nn``, PyTorch's layer names and counts.

Each builder takes ``in_channels``, ``num_classes`` and the input size so the same network
can be trained on 28x28 greyscale (Fashion-MNIST) or 32x32 colour (CIFAR-10). State-dict
keys equal those of the same network written with ``torch.nn``, so weights trained in
PyTorch load here with ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import nn


class LeNet5(nn.Module):
    """conv(C,6,5,pad 2)-relu-pool-conv(6,16,5)-relu-pool-fc 400-120-84-num_classes.

    Input (N, in_channels, H, W) with H = W = 28 by default; output logits (N, num_classes).
    Keys: ``features.{0,3}.*``, ``classifier.{0,2,4}.*`` (61,706 parameters for 28x28x1).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = ((input_size // 2) - 4) // 2
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def lenet5(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> LeNet5:
    """The classic LeNet-5 (ReLU + max-pool variant), 61,706 parameters on 28x28x1."""
    return LeNet5(in_channels, num_classes, input_size)


MODELS: dict[str, Callable[..., nn.Module]] = {"lenet5": lenet5}

# the input each model is trained on by default: (channels, side); the data pipeline pads
# 28x28 images to 32x32 for the models that want a power-of-two side
DEFAULT_INPUT: dict[str, int] = {"lenet5": 28}


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a zoo model by name; unknown names raise a ValueError listing the valid ones."""
    if name not in MODELS:
        raise ValueError(f"zoo.get_model: unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def available() -> list[str]:
    return sorted(MODELS)


# --- summary ----------------------------------------------------------------------


def _flops(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    """Floating-point operations per image (2 per multiply-add) of conv and linear layers."""
    name = type(module).__name__
    out_elems = int(np.prod(out_shape[1:]))
    w = getattr(module, "weight", None)
    if name in ("Conv2d", "Conv1d") and w is not None:
        per_out = int(np.prod(w.shape[1:]))  # C_in/groups * kH * kW multiply-adds
        return 2 * out_elems * per_out
    if name == "ConvTranspose2d" and w is not None:
        # every input pixel scatters C_out/groups * kH * kW multiply-adds
        in_elems = int(np.prod(module._summary_in_shape[1:]))
        return 2 * in_elems * int(np.prod(w.shape[1:]))
    if name == "Linear" and w is not None:
        return 2 * int(np.prod(out_shape[1:-1] or (1,))) * w.shape[0] * w.shape[1]
    if name.startswith("BatchNorm"):
        return 2 * out_elems
    return 0


def summary(model: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> str:
    """A table of the leaf layers: output shape, parameters, FLOPs per image (torchinfo-like).

    ``input_shape`` is one image's (C, H, W); one zero image is run through the model
    under ``no_grad`` to record each layer's output shape.
    """
    from .autograd import no_grad
    from .tensor import Tensor

    leaves = [(n, m) for n, m in model.named_modules() if n and not m._modules]
    records: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for _, m in leaves:
        fwd = m.forward

        def wrapped(x, *a, _m=m, _fwd=fwd, **k):
            out = _fwd(x, *a, **k)
            records[id(_m)] = (tuple(getattr(x, "shape", ())), tuple(out.shape))
            return out

        object.__setattr__(m, "forward", wrapped)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            out = model(Tensor(np.zeros((1, *input_shape), np.float32)))
    finally:
        for _, m in leaves:
            m.__dict__.pop("forward", None)
        model.train(was_training)
    rows = []
    total_flops = 0
    for lname, m in leaves:
        in_shape, out_shape = records.get(id(m), ((), ()))
        m._summary_in_shape = in_shape if in_shape else (1,)
        params = sum(p.size for p in m._parameters.values() if p is not None)
        flops = _flops(m, out_shape) if out_shape else 0
        m.__dict__.pop("_summary_in_shape", None)
        total_flops += flops
        shape = "x".join(str(s) for s in out_shape[1:]) if out_shape else "(not run)"
        rows.append((lname, type(m).__name__, shape, f"{params:,}", f"{flops:,}"))
    header = ("layer", "type", "output", "params", "FLOPs")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    line = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    sep = "-" * (sum(widths) + 8)
    total = sum(p.size for p in model.parameters())
    trainable = sum(p.size for p in model.parameters() if p.requires_grad)
    out_lines = [
        f"{name or type(model).__name__}: input 1x{'x'.join(map(str, input_shape))}, "
        f"output {'x'.join(map(str, out.shape[1:]))}",
        sep,
        line.format(*header),
        sep,
        *(line.format(*r) for r in rows),
        sep,
        f"total parameters: {total:,} (trainable {trainable:,})",
        f"FLOPs per image (forward): {total_flops:,} ({total_flops / 1e6:.2f} M)",
    ]
    return "\n".join(out_lines)
