"""One full training step (forward, backward, SGD-momentum update), tapegrad vs PyTorch.

Each zoo model and the same network written with ``torch.nn`` (weights copied across so
both start equal) train on a batch of 64 random images with 2 threads each
(``tapegrad.set_num_threads(2)``, ``torch.set_num_threads(2)``). After ``--warmup`` steps
(Numba JIT and first-touch allocation; the first step's excess is reported as JIT time)
the steps are timed ``--repeats`` times, the two frameworks interleaved so both see the
same machine load. Reported: median step time, images/s and the ratio of tapegrad's
median step time to PyTorch's (lower is better).

    python benchmarks/train_vs_torch.py [--models lenet5,vgg_small] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import optim, zoo

# the targets of issue 5: tapegrad step time / PyTorch step time
TARGETS = {"lenet5": 1.0, "vgg_small": 1.0, "mobilenet_small": 0.5, "conv_autoencoder": 1.0}


def _torch_models(torch, name, in_channels=1, num_classes=10, input_size=28, width=None):
    """The zoo network `name` written with torch.nn (same layers, same state-dict keys)."""
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


def _torch_step(torch, model, opt, x, y, recon):
    opt.zero_grad()
    out = model(x)
    loss = (
        torch.nn.functional.mse_loss(out, x) if recon else torch.nn.functional.cross_entropy(out, y)
    )
    loss.backward()
    opt.step()


def _tg_step(model, opt, x, y, recon):
    opt.zero_grad()
    out = model(x)
    loss = F.mse_loss(out, x) if recon else F.cross_entropy(out, y)
    loss.backward()
    opt.step()


def bench(name: str, batch: int, warmup: int, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    tg.set_num_threads(threads)
    side = zoo.DEFAULT_INPUT[name]
    tg.manual_seed(0)
    ours = zoo.get_model(name)
    width = getattr(ours, "width", None)
    kwargs = {"input_size": side}
    defaults = {"vgg_small": 32, "mobilenet_small": 32, "resnet8": 16, "conv_autoencoder": 16}
    if name in defaults:
        kwargs["width"] = width or defaults[name]
    theirs = _torch_models(torch, name, **kwargs)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    recon = name == "conv_autoencoder"
    rng = np.random.default_rng(0)
    xn = rng.random((batch, 1, side, side)).astype(np.float32)
    yn = rng.integers(0, 10, batch)
    x, y = tg.Tensor(xn), yn
    tx, ty = torch.tensor(xn), torch.tensor(yn)
    opt = optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
    ours.train()
    theirs.train()
    t0 = time.perf_counter()
    _tg_step(ours, opt, x, y, recon)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        _tg_step(ours, opt, x, y, recon)
        _torch_step(torch, theirs, topt, tx, ty, recon)
    ts, tt = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _tg_step(ours, opt, x, y, recon)
        ts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _torch_step(torch, theirs, topt, tx, ty, recon)
        tt.append(time.perf_counter() - t0)
    a, b = statistics.median(ts), statistics.median(tt)
    return {
        "model": name,
        "tapegrad_ms": 1e3 * a,
        "torch_ms": 1e3 * b,
        "tapegrad_img_s": batch / a,
        "torch_img_s": batch / b,
        "ratio": a / b,
        "first_step_excess_s": max(first - a, 0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,vgg_small,mobilenet_small,conv_autoencoder,resnet8")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(
        f"batch {args.batch}, {args.threads} threads each, median of {args.repeats} steps "
        f"after {args.warmup} warm-up steps"
    )
    print()
    print(
        "| model | tapegrad ms/step | torch ms/step | tapegrad img/s | torch img/s | "
        "ratio (tg/torch) | target | first-step JIT+alloc s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        r = bench(name, args.batch, args.warmup, args.repeats, args.threads)
        target = TARGETS.get(name)
        print(
            f"| {name} | {r['tapegrad_ms']:.1f} | {r['torch_ms']:.1f} | "
            f"{r['tapegrad_img_s']:.0f} | {r['torch_img_s']:.0f} | {r['ratio']:.2f} | "
            f"{f'<= {target:.1f}' if target else '-'} | {r['first_step_excess_s']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
