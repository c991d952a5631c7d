"""The zoo's networks written with ``torch.nn``, layer for layer (PyTorch is optional)."""

from __future__ import annotations

from typing import Any

from . import zoo


def torch_model(
    name: str,
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    width: int | None = None,
) -> Any:
    """The zoo network ``name`` written with ``torch.nn``: same layers, same state-dict keys.

    Needs PyTorch (``pip install torch``). Used as the oracle in the tests and the
    baseline in ``benchmarks/train_vs_torch.py``; also a way to train in PyTorch and load
    the weights here (``safetensors.torch.save_file(model.state_dict(), path)``, then
    ``tapegrad_model.load_state_dict(tapegrad.load(path))``).
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "tapegrad.zoo_torch needs PyTorch: pip install torch (CPU build)"
        ) from exc
    tn = torch.nn

    def cbr(cin, cout, k=3, stride=1, groups=1):
        return [
            tn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            tn.BatchNorm2d(cout),
            tn.ReLU(),
        ]

    if name == "lenet5":
        side = ((input_size // 2) - 4) // 2

        class LeNet(tn.Module):
            def __init__(self):
                super().__init__()
                self.features = tn.Sequential(
                    tn.Conv2d(in_channels, 6, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2),
                    tn.Conv2d(6, 16, 5), tn.ReLU(), tn.MaxPool2d(2),
                )  # fmt: skip
                self.flatten = tn.Flatten()
                self.classifier = tn.Sequential(
                    tn.Linear(16 * side * side, 120), tn.ReLU(), tn.Linear(120, 84), tn.ReLU(),
                    tn.Linear(84, num_classes),
                )  # fmt: skip

            def forward(self, x):
                return self.classifier(self.flatten(self.features(x)))

        return LeNet()
    if name == "vgg_small":
        w = width

        class VGG(tn.Module):
            def __init__(self):
                super().__init__()
                self.features = tn.Sequential(
                    *cbr(in_channels, w), *cbr(w, w), tn.MaxPool2d(2), tn.Dropout(0.25),
                    *cbr(w, 2 * w), *cbr(2 * w, 2 * w), tn.MaxPool2d(2), tn.Dropout(0.25),
                )  # fmt: skip
                s = input_size // 4
                self.classifier = tn.Sequential(
                    tn.Flatten(), tn.Linear(2 * w * s * s, 256), tn.ReLU(), tn.Dropout(0.5),
                    tn.Linear(256, num_classes),
                )  # fmt: skip

            def forward(self, x):
                return self.classifier(self.features(x))

        return VGG()
    if name == "mobilenet_small":

        class DS(tn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.depthwise = tn.Sequential(*cbr(cin, cin, 3, stride, groups=cin))
                self.pointwise = tn.Sequential(*cbr(cin, cout, 1))

            def forward(self, x):
                return self.pointwise(self.depthwise(x))

        class Mobile(tn.Module):
            def __init__(self):
                super().__init__()
                layers, c = [*cbr(in_channels, width)], width
                for cout, stride in zoo.MobileNetSmall.CONFIG:
                    cout = cout * width // 32
                    layers.append(DS(c, cout, stride))
                    c = cout
                self.features = tn.Sequential(*layers)
                self.pool = tn.Identity()
                self.classifier = tn.Linear(c, num_classes)

            def forward(self, x):
                return self.classifier(self.features(x).mean((2, 3)))

        return Mobile()
    if name == "resnet8":

        class Block(tn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.bn1 = tn.BatchNorm2d(cin)
                self.conv1 = tn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.bn2 = tn.BatchNorm2d(cout)
                self.conv2 = tn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.relu = tn.ReLU()
                proj = stride != 1 or cin != cout
                self.shortcut = tn.Conv2d(cin, cout, 1, stride, bias=False) if proj else None

            def forward(self, x):
                out = self.relu(self.bn1(x))
                skip = self.shortcut(out) if self.shortcut is not None else x
                return self.conv2(self.relu(self.bn2(self.conv1(out)))) + skip

        class Res(tn.Module):
            def __init__(self):
                super().__init__()
                w = width
                self.conv1 = tn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
                self.layer1 = Block(w, w, 1)
                self.layer2 = Block(w, 2 * w, 2)
                self.layer3 = Block(2 * w, 4 * w, 2)
                self.bn = tn.BatchNorm2d(4 * w)
                self.relu = tn.ReLU()
                self.fc = tn.Linear(4 * w, num_classes)

            def forward(self, x):
                x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
                return self.fc(self.relu(self.bn(x)).mean((2, 3)))

        return Res()
    if name == "conv_autoencoder":
        w = width

        class AE(tn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = tn.Sequential(
                    tn.Conv2d(in_channels, w, 3, 2, 1), tn.ReLU(), tn.Conv2d(w, 2 * w, 3, 2, 1),
                    tn.ReLU(),
                )  # fmt: skip
                self.decoder = tn.Sequential(
                    tn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1), tn.ReLU(),
                    tn.ConvTranspose2d(w, in_channels, 3, 2, 1, output_padding=1), tn.Sigmoid(),
                )  # fmt: skip

            def forward(self, x):
                return self.decoder(self.encoder(x))

        return AE()
    raise KeyError(name)
