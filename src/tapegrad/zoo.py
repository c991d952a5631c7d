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
from .nn.module import relu_after


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
        """Logits (N, num_classes) of images ``x`` (N, in_channels, input_size, input_size)."""
        return self.classifier(self.flatten(self.features(x)))


def lenet5(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> LeNet5:
    """The classic LeNet-5 (ReLU + max-pool variant), 61,706 parameters on 28x28x1."""
    return LeNet5(in_channels, num_classes, input_size)


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C): the mean over H and W (``AdaptiveAvgPool2d(1)`` + flatten)."""

    def forward(self, x):
        """The mean of ``x`` (N, C, H, W) over H and W: (N, C)."""
        return x.mean(axis=(2, 3))


def _conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1):
    """Conv (no bias: BN's shift replaces it) + BatchNorm2d + ReLU, as three Sequential items."""
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]


class VGGSmall(nn.Module):
    """[conv-BN-ReLU x2, max-pool, dropout] x2, then FC 256 - dropout 0.5 - FC num_classes.

    Channels ``width`` then ``2 * width``; input (N, in_channels, S, S) with S divisible by 4
    (32 for Fashion-MNIST padded to 32x32). Keys ``features.{0,1,3,4,8,9,11,12}.*``,
    ``classifier.{1,4}.*``, the same as the ``torch.nn`` network written the same way.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 32,
        width: int = 32,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if input_size % 4:
            raise ValueError(f"vgg_small: input_size must be divisible by 4, got {input_size}")
        w1, w2 = width, 2 * width
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, w1),
            *_conv_bn_relu(w1, w1),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            *_conv_bn_relu(w1, w2),
            *_conv_bn_relu(w2, w2),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
        )
        side = input_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(w2 * side * side, 256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(256, num_classes),
        )

    def forward(self, x):
        """Logits (N, num_classes) of images ``x`` (N, in_channels, H, W)."""
        return self.classifier(self.features(x))


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 (groups=C) + BN + ReLU, then pointwise 1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Sequential(*_conv_bn_relu(cin, cin, 3, stride, groups=cin))
        self.pointwise = nn.Sequential(*_conv_bn_relu(cin, cout, 1))

    def forward(self, x):
        """Depthwise then pointwise convolution of ``x`` (N, C_in, H, W), each with BN and ReLU."""
        return self.pointwise(self.depthwise(x))


class MobileNetSmall(nn.Module):
    """3x3 stem, depthwise-separable blocks (stride 2 to downsample), global average pool.

    Input (N, in_channels, S, S); channels 32 -> 64 -> 128 -> 128 -> 256 with strides
    1, 2, 1, 2, 2 after a stride-1 stem of 32 channels; output (N, num_classes).
    """

    CONFIG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 2))

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: int = 32, width: int = 32
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn_relu(in_channels, width)]
        c = width
        for cout, stride in self.CONFIG:
            cout = cout * width // 32
            layers.append(DepthwiseSeparable(c, cout, stride))
            c = cout
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(c, num_classes)
        self.input_size = input_size

    def forward(self, x):
        """Logits (N, num_classes) of images ``x`` (N, in_channels, H, W)."""
        return self.classifier(self.pool(self.features(x)))


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3, plus the input (a 1x1 conv when shapes change).

    As in He et al.'s pre-activation ResNet, the shortcut branches off after the first
    BN-ReLU when it needs a projection.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        else:
            self.shortcut = None

    def forward(self, x):
        """``x`` plus the residual branch (BN-ReLU-conv twice); a 1x1 shortcut when the shape
        changes.
        """
        out = relu_after(self.bn1, self.relu, x)  # BN and ReLU as one fused op
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(relu_after(self.bn2, self.relu, out))
        return out + skip


class ResNet8(nn.Module):
    """Pre-activation ResNet-8: 3x3 stem, three stages of one block each (widths w, 2w, 4w;
    strides 1, 2, 2), BN-ReLU, global average pool, linear. Input (N, C, S, S)."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: int = 32, width: int = 16
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.layer1 = PreActBlock(width, width, 1)
        self.layer2 = PreActBlock(width, 2 * width, 2)
        self.layer3 = PreActBlock(2 * width, 4 * width, 2)
        self.bn = nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU()
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(4 * width, num_classes)
        self.input_size = input_size

    def forward(self, x):
        """Logits (N, num_classes) of images ``x`` (N, in_channels, H, W)."""
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(self.pool(relu_after(self.bn, self.relu, x)))


class ConvAutoencoder(nn.Module):
    """Strided-conv encoder, ConvTranspose2d decoder; output in [0, 1] (sigmoid).

    (N, C, S, S) -> (N, C, S, S) with S divisible by 4: 28 -> 14 -> 7 (32 channels)
    -> 14 -> 28. Trained with the MSE against its input (``task = "reconstruction"``).
    """

    task = "reconstruction"

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, width: int = 16
    ) -> None:
        super().__init__()
        if input_size % 4:
            raise ValueError(
                f"conv_autoencoder: input_size must be divisible by 4, got {input_size}"
            )
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, in_channels, 3, stride=2, padding=1, output_padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        """The reconstruction of ``x`` (N, in_channels, H, W), same shape, in [0, 1]."""
        return self.decoder(self.encoder(x))


def vgg_small(
    in_channels: int = 1, num_classes: int = 10, input_size: int = 32, width: int = 32
) -> VGGSmall:
    """VGG-style CNN with batch norm and dropout (the seed's problem 6 network)."""
    return VGGSmall(in_channels, num_classes, input_size, width)


def mobilenet_small(
    in_channels: int = 1, num_classes: int = 10, input_size: int = 32, width: int = 32
) -> MobileNetSmall:
    """Depthwise-separable CNN (the seed's problem 3)."""
    return MobileNetSmall(in_channels, num_classes, input_size, width)


def resnet8(
    in_channels: int = 1, num_classes: int = 10, input_size: int = 32, width: int = 16
) -> ResNet8:
    """Pre-activation residual network with three stages."""
    return ResNet8(in_channels, num_classes, input_size, width)


def conv_autoencoder(
    in_channels: int = 1, num_classes: int = 10, input_size: int = 28, width: int = 16
) -> ConvAutoencoder:
    """Strided-conv encoder + transposed-conv decoder; ``num_classes`` is ignored."""
    return ConvAutoencoder(in_channels, num_classes, input_size, width)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lenet5,
    "vgg_small": vgg_small,
    "mobilenet_small": mobilenet_small,
    "resnet8": resnet8,
    "conv_autoencoder": conv_autoencoder,
}

# the side each model is trained at by default; 28x28 datasets are zero-padded to 32x32
# for the models that want it
DEFAULT_INPUT: dict[str, int] = {
    "lenet5": 28,
    "vgg_small": 32,
    "mobilenet_small": 32,
    "resnet8": 32,
    "conv_autoencoder": 28,
}


def task_of(name: str) -> str:
    """``"reconstruction"`` for autoencoders (MSE against the input), else ``"classification"``."""
    model_cls = {"conv_autoencoder": ConvAutoencoder}.get(name)
    return getattr(model_cls, "task", "classification")


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a zoo model by name; unknown names raise a ValueError listing the valid ones."""
    if name not in MODELS:
        raise ValueError(f"zoo.get_model: unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def available() -> list[str]:
    """The names of the zoo models, sorted (what :func:`get_model` accepts)."""
    return sorted(MODELS)


# --- summary ----------------------------------------------------------------------


def _flops(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    """FLOPs per image (2 per multiply-add) of conv, transposed-conv and linear layers."""
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
    return 0  # element-wise layers (ReLU, BN, pooling) are not counted, as in torch's counter


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
