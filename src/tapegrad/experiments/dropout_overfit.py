"""Problem 6(c): a small CNN that overfits, trained with and without dropout.

A two-convolution network is trained on a small Fashion-MNIST subset (few images, many
epochs: it memorises them) and evaluated after every epoch on held-out validation
images. Without dropout training accuracy races to ~1 and the validation accuracy falls
behind; with dropout before each of the two fully connected layers the gap between
them shrinks and the validation accuracy is at least as good.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import manual_seed, nn, no_grad, optim
from ..tensor import Tensor
from . import _data
from ._common import classification_epoch, figure, save, table

RATE = 0.5


@dataclass
class Curve:
    """One training run's per-epoch train and validation accuracy and losses."""

    dropout: float
    train_acc: list[float]
    val_acc: list[float]
    losses: list[float]

    @property
    def gap(self) -> float:
        """Train minus validation accuracy, averaged over the last three epochs."""
        return float(np.mean(self.train_acc[-3:]) - np.mean(self.val_acc[-3:]))

    @property
    def val(self) -> float:
        """Validation accuracy averaged over the last three epochs."""
        return float(np.mean(self.val_acc[-3:]))


@dataclass
class Result:
    """What ``dropout-overfit`` (homework problem 6(c)) computes: the numbers it prints and
    plots.
    """

    n_train: int
    n_val: int
    epochs: int
    curves: dict[str, Curve]


def small_cnn(rate: float) -> nn.Module:
    """(N, 1, 28, 28) -> (N, 10): two 3x3 conv + pool stages, then two linear layers."""
    drop = [nn.Dropout(rate)] if rate > 0 else []
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 12, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        *drop,
        nn.Linear(12 * 7 * 7, 128),
        nn.ReLU(),
        *drop,
        nn.Linear(128, 10),
    )


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with no_grad():
        for i in range(0, len(y), batch):
            correct += int(
                (model(Tensor(x[i : i + batch])).data.argmax(1) == y[i : i + batch]).sum()
            )
    return correct / len(y)


def train_curve(
    rate, xtr, ytr, xva, yva, epochs: int, seed: int, batch: int = 20, lr: float = 3e-3
) -> Curve:
    """Train the small CNN with dropout ``rate`` (Adam) and record a :class:`Curve` per epoch."""
    manual_seed(seed)
    model = small_cnn(rate)
    opt = optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    curve = Curve(rate, [], [], [])
    for _ in range(epochs):
        curve.losses.extend(classification_epoch(model, opt, xtr, ytr, batch, rng))
        curve.train_acc.append(_accuracy(model, xtr, ytr))
        curve.val_acc.append(_accuracy(model, xva, yva))
    return curve


def run(seed: int = 0, per_class_train: int = 30, per_class_val: int = 50, epochs: int = 40):
    """Run ``dropout-overfit`` (problem 6(c)) with the given seed and options; returns its
    :class:`Result`.
    """
    xtr, ytr = _data.subset("train", per_class_train, seed)
    # validation images come from the training file too, disjoint from the training ones
    xva, yva = _data.subset("train", per_class_val, seed, skip=per_class_train)
    curves = {
        key: train_curve(rate, xtr, ytr, xva, yva, epochs, seed)
        for key, rate in (("no dropout", 0.0), (f"dropout {RATE}", RATE))
    }
    return Result(len(ytr), len(yva), epochs, curves)


def report(r: Result) -> str:
    """The text ``tapegrad experiment dropout-overfit`` prints for a :class:`Result`."""
    rows = []
    for key, c in r.curves.items():
        rows.append([key, f"{np.mean(c.train_acc[-3:]):.3f}", f"{c.val:.3f}", f"{c.gap:.3f}"])
    per_epoch = [
        [e + 1] + [f"{c.train_acc[e]:.3f} / {c.val_acc[e]:.3f}" for c in r.curves.values()]
        for e in range(r.epochs)
    ]
    a, b = r.curves.values()
    return "\n".join(
        [
            f"small CNN on Fashion-MNIST: {r.n_train} training, {r.n_val} validation images, "
            f"{r.epochs} epochs",
            table(["epoch"] + [f"{k}: train / val" for k in r.curves], per_epoch),
            "last three epochs:",
            table(["model", "train acc", "val acc", "gap"], rows),
            f"train-validation gap {a.gap:.3f} -> {b.gap:.3f} with dropout "
            f"({'smaller' if b.gap < a.gap else 'not smaller'}); validation accuracy "
            f"{a.val:.3f} -> {b.val:.3f} ({'higher' if b.val > a.val else 'not higher'})",
        ]
    )


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``dropout-overfit`` to the PNG file ``path``."""
    fig, ax = figure(1, 2, (11, 4))
    epochs = np.arange(1, r.epochs + 1)
    for a, (key, c) in zip(ax[0], r.curves.items()):
        a.plot(epochs, c.train_acc, "o-", label="train")
        a.plot(epochs, c.val_acc, "s-", label="validation")
        a.fill_between(epochs, c.val_acc, c.train_acc, alpha=0.15)
        a.set(xlabel="epoch", ylabel="accuracy", title=f"{key}: gap {c.gap:.3f}", ylim=(0.0, 1.02))
        a.legend()
    save(fig, path)
