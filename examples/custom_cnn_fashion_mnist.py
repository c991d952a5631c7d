"""Train a small CNN of your own on Fashion-MNIST, checkpoint it, resume, evaluate.

    python examples/custom_cnn_fashion_mnist.py --epochs 3
    python examples/custom_cnn_fashion_mnist.py --quick     # 512 images, a few seconds

Fashion-MNIST comes from Debian's dataset-fashion-mnist package
(/usr/share/datasets/fashion-mnist); --data-dir points elsewhere.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import tapegrad as tg
import tapegrad.nn as nn
import tapegrad.nn.functional as F
from tapegrad import data, optim
from tapegrad.optim import lr_scheduler


class SmallCNN(nn.Module):
    """conv-BN-ReLU-pool twice, dropout, then a linear classifier; input (N, 1, 28, 28)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.dropout = nn.Dropout(0.25)
        self.classifier = nn.Linear(32 * 7 * 7, num_classes)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        """Logits (N, num_classes) of images x (N, 1, 28, 28)."""
        return self.classifier(self.dropout(self.features(x).flatten(1)))


def train_epoch(model, loader, opt, sched) -> tuple[float, float]:
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    for xb, yb in loader:
        logits = model(tg.tensor(xb))
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item() * len(yb)
        correct += int((logits.numpy().argmax(1) == yb).sum())
        total += len(yb)
    return loss_sum / total, correct / total


def evaluate(model, loader) -> float:
    model.eval()
    correct = 0
    with tg.no_grad():
        for xb, yb in loader:
            correct += int((model(tg.tensor(xb)).numpy().argmax(1) == yb).sum())
    return correct / len(loader.dataset)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate (one-cycle)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="checkpoint folder (default: a temporary one)")
    p.add_argument("--quick", action="store_true", help="512 training images, 2 epochs")
    args = p.parse_args(argv)
    limit_train, limit_test = (512, 256) if args.quick else (None, None)
    epochs = 2 if args.quick else args.epochs

    tg.manual_seed(0)
    x_train, y_train = data.load_dataset("fashion-mnist", "train", args.data_dir, limit_train)
    x_test, y_test = data.load_dataset("fashion-mnist", "test", args.data_dir, limit_test)
    normalize = data.Normalize([0.2860], [0.3530])
    train_loader = data.DataLoader(
        data.TensorDataset(normalize(x_train), y_train, transform=data.RandomCrop(28, padding=2)),
        args.batch_size,
        shuffle=True,
        seed=0,
    )
    test_loader = data.DataLoader(data.TensorDataset(normalize(x_test), y_test), 500)

    def build():
        model = SmallCNN()
        opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
        total = epochs * len(train_loader)
        sched = lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total)
        return model, opt, sched

    model, opt, sched = build()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        for epoch in range(1, epochs + 1):
            if epoch == 2:
                # resume from the checkpoint, as a new process would
                state = tg.load(out / "epoch1.safetensors")
                model, opt, sched = build()
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                train_loader.set_epoch(state["epoch"])
                print(f"resumed from {out / 'epoch1.safetensors'}")
            loss, acc = train_epoch(model, train_loader, opt, sched)
            test_acc = evaluate(model, test_loader)
            print(
                f"epoch {epoch}: train loss {loss:.4f}, train accuracy {acc:.3f}, "
                f"test accuracy {test_acc:.3f}"
            )
            tg.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": epoch,
                },
                out / f"epoch{epoch}.safetensors",
            )
    print(f"test accuracy: {100 * test_acc:.2f}% on {len(y_test)} images")
    return 0 if np.isfinite(loss) else 1


if __name__ == "__main__":
    raise SystemExit(main())
