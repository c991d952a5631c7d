"""Problem 5(i): dropout when one input feature gives the label away in training.

A linear classifier (softmax regression) on real Fashion-MNIST images gets ten extra
input features: in training they are the one-hot label times 5 (a strong 'cheating'
feature that predicts the label perfectly), in testing they carry no information. Trained without
dropout, the model leans on the cheating feature and learns little from the pixels;
with dropout on the inputs the cheating feature is missing half the time, so the pixels
have to carry the prediction too. Reported, with and without dropout:

* test accuracy on clean images (cheating features zero),
* the weight on the cheating feature (mean of W[k, cheat_k]) next to the largest pixel
  weight, and how often the model follows the cheating feature when it names a wrong
  class in testing (its reliance on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import manual_seed, nn, no_grad, optim
from ..tensor import Tensor
from . import _data
from ._common import classification_epoch, figure, save, table

RATE = 0.5
PIXELS = 28 * 28
CHEAT = 5.0  # value of the cheating feature: strong enough to win over the pixels


@dataclass
class Model:
    """One trained softmax regression (with or without dropout): accuracies and weights on
    the cheating feature.
    """

    dropout: float
    train_acc: float
    test_acc_clean: float
    follows_cheat: float  # fraction of test predictions equal to a wrong cheating label
    cheat_weight: float  # mean_k W[k, cheat_k] (same-class weight of the cheating feature)
    pixel_weight: float  # mean over classes of max |W[k, pixel]|
    weights: np.ndarray  # (10, 794)
    losses: list[float]


@dataclass
class Result:
    """What ``dropout-cheating`` (homework problem 5(i)) computes: the numbers it prints and
    plots.
    """

    n_train: int
    n_test: int
    models: dict[str, Model]


def _features(x: np.ndarray, cheat_labels: np.ndarray | None) -> np.ndarray:
    cheat = np.zeros((len(x), 10), dtype=np.float32)
    if cheat_labels is not None:
        cheat[np.arange(len(x)), cheat_labels] = CHEAT
    return np.concatenate([x.reshape(len(x), -1), cheat], axis=1)


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with no_grad():
        pred = model(Tensor(x)).data.argmax(axis=1)
    return float((pred == y).mean())


def train_model(
    rate: float, xtr: np.ndarray, ytr: np.ndarray, epochs: int, seed: int, batch: int = 64
) -> tuple[nn.Module, list[float]]:
    """Softmax regression on ``xtr`` (N, features), dropout ``rate`` on its input, SGD;
    returns the model and its losses.
    """
    manual_seed(seed)
    layers = [nn.Dropout(rate)] if rate > 0 else []
    model = nn.Sequential(*layers, nn.Linear(xtr.shape[1], 10))
    opt = optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        losses += classification_epoch(model, opt, xtr, ytr, batch, rng)
    return model, losses


def run(seed: int = 0, per_class_train: int = 300, per_class_test: int = 200, epochs: int = 8):
    """Run ``dropout-cheating`` (problem 5(i)) with the given seed and options; returns its
    :class:`Result`.
    """
    xtr_img, ytr = _data.subset("train", per_class_train, seed)
    xte_img, yte = _data.subset("test", per_class_test, seed)
    rng = np.random.default_rng(seed + 1)
    xtr = _features(xtr_img, ytr)  # training: the cheating feature is the label
    xte_clean = _features(xte_img, None)
    wrong = (yte + rng.integers(1, 10, len(yte))) % 10  # a random wrong class
    xte_wrong = _features(xte_img, wrong)
    models = {}
    for key, rate in (("no dropout", 0.0), (f"dropout {RATE}", RATE)):
        model, losses = train_model(rate, xtr, ytr, epochs, seed)
        lin = model[-1]
        w = lin.weight.data.astype(np.float64)
        model.eval()
        with no_grad():
            pred_wrong = model(Tensor(xte_wrong)).data.argmax(axis=1)
        models[key] = Model(
            dropout=rate,
            train_acc=_accuracy(model, xtr, ytr),
            test_acc_clean=_accuracy(model, xte_clean, yte),
            follows_cheat=float((pred_wrong == wrong).mean()),
            cheat_weight=float(np.mean([w[k, PIXELS + k] for k in range(10)])),
            pixel_weight=float(np.abs(w[:, :PIXELS]).max(axis=1).mean()),
            weights=w,
            losses=losses,
        )
    return Result(n_train=len(ytr), n_test=len(yte), models=models)


def report(r: Result) -> str:
    """The text ``tapegrad experiment dropout-cheating`` prints for a :class:`Result`."""
    rows = [
        [
            k,
            f"{m.train_acc:.3f}",
            f"{m.test_acc_clean:.3f}",
            f"{m.cheat_weight:.2f}",
            f"{m.pixel_weight:.2f}",
            f"{m.follows_cheat:.3f}",
        ]
        for k, m in r.models.items()
    ]
    a, b = r.models.values()
    return "\n".join(
        [
            f"Fashion-MNIST, {r.n_train} training and {r.n_test} test images; softmax "
            f"regression on 784 pixels + a one-hot 'cheating' copy of the label x {CHEAT:g} "
            "(training only; zero in the clean test, a wrong class in the 'follows' test)",
            table(
                [
                    "model",
                    "train acc",
                    "test acc (clean)",
                    "cheat weight",
                    "max pixel weight",
                    "follows wrong cheat",
                ],
                rows,
            ),
            f"clean test accuracy {a.test_acc_clean:.3f} -> {b.test_acc_clean:.3f} with dropout "
            f"({'higher' if b.test_acc_clean > a.test_acc_clean else 'not higher'}); weight on "
            f"the cheating feature {a.cheat_weight:.2f} -> {b.cheat_weight:.2f} "
            f"({'less' if b.cheat_weight < a.cheat_weight else 'not less'} reliance), still "
            f"{b.cheat_weight / b.pixel_weight:.1f}x the largest pixel weight",
        ]
    )


def plot(r: Result, path) -> None:
    """Draw a :class:`Result` of ``dropout-cheating`` to the PNG file ``path``."""
    fig, ax = figure(2, 3, (12, 7))
    items = list(r.models.items())
    for row, (key, m) in enumerate(items):
        w = m.weights
        for j, (cls, title) in enumerate(((0, "T-shirt"), (7, "Sneaker"))):
            img = w[cls, :PIXELS].reshape(28, 28)
            lim = np.abs(img).max()
            ax[row, j].imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax[row, j].set_title(f"{key}: pixel weights, class {title}", fontsize=9)
            ax[row, j].axis("off")
    a = ax[0, 2]
    names = [k for k, _ in items]
    x = np.arange(len(names))
    a.bar(x - 0.2, [m.test_acc_clean for _, m in items], 0.4, label="test acc (clean)")
    a.bar(x + 0.2, [m.follows_cheat for _, m in items], 0.4, label="follows wrong cheat")
    a.set_xticks(x, names)
    a.set_ylim(0, 1)
    a.legend(fontsize=8)
    a.set_title("accuracy and reliance")
    a = ax[1, 2]
    for key, m in items:
        a.plot(m.losses, lw=0.8, label=key)
    a.set(yscale="log", xlabel="step", ylabel="training loss", title="training loss")
    a.legend(fontsize=8)
    save(fig, path)
