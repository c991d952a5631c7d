"""Training and evaluation loops behind ``tapegrad train`` / ``tapegrad eval``.

:class:`Trainer` owns one model, optimizer, scheduler and the data loaders. Its per-batch
work is split so that data-parallel training can hook in without touching the loop:

- :meth:`Trainer.train_step` runs forward, loss, backward, then ``grad_hook(params)``
  (e.g. an all-reduce of the gradients; ``None`` on one process), then the optimizer
  step and the per-batch scheduler step;
- ``is_main`` switches progress bars, ``metrics.jsonl``, checkpoints and plots off on all
  but rank 0; ``DataLoader(rank=, world_size=)`` shards each epoch's batches.

Every epoch ends with a test evaluation (under ``no_grad``), one ``metrics.jsonl``
line, a checkpoint (``RUN_DIR/last.safetensors`` + ``epoch{N}.safetensors``) and the PNG
curves; the callbacks (:mod:`tapegrad.callbacks`) add ``metrics.csv``, ``best.safetensors``,
early stopping and TensorBoard event files. ``cfg.max_steps`` ends the run after that many
optimiser steps (evaluated and checkpointed, even mid-epoch). ``--resume CKPT`` restores
model, optimizer, scheduler, the epoch and step counters, the callbacks' state and the
random generator, so a resumed run ends with the same weights as an uninterrupted one
(from a mid-epoch checkpoint too: the epoch's batches already trained are skipped).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import callbacks as cb
from . import checkpoint, creation, data, lr_scheduler, optim, zoo
from .autograd import no_grad
from .kernels import set_num_threads
from .nn import functional as F
from .nn.module import Module
from .tensor import Tensor

# Fashion-MNIST / MNIST / CIFAR-10 channel statistics of the [0, 1] training pixels
_NORMALISE = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "digits": ((0.3,), (0.4,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


@dataclass
class TrainConfig:
    """Everything a run depends on; saved into each checkpoint and ``config.json``.

    ``max_steps`` ends the run after that many optimiser steps (the learning-rate
    schedule then spans them instead of ``epochs``); ``early_stop`` is the patience in
    epochs of :class:`~tapegrad.callbacks.EarlyStopping` on ``monitor`` (``val_loss``,
    ``val_acc``), which also picks ``best.safetensors``; ``tensorboard`` adds
    :class:`~tapegrad.callbacks.TensorBoardLogger` (see :func:`default_callbacks`).
    """

    model: str = "lenet5"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    epochs: int = 1
    batch_size: int = 64
    lr: float | None = None
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "onecycle"
    warmup: int = 0
    threads: int | None = None
    seed: int = 0
    out: str | None = None
    augment: bool = False
    limit_train: int | None = None
    limit_test: int | None = None
    eval_batch_size: int = 500
    progress: bool = True
    plot: bool = True
    max_steps: int | None = None
    early_stop: int | None = None
    monitor: str = "val_loss"
    tensorboard: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# with the default one-cycle schedule these are the peak rates
DEFAULT_LR = {"sgd": 0.1, "adam": 2e-3, "adamw": 2e-3, "rmsprop": 1e-3}


def build_optimizer(cfg: TrainConfig, params: Sequence[Any]) -> optim.Optimizer:
    """The optimiser ``cfg.optimizer`` names over ``params``, with ``cfg.lr`` (default: the
    optimiser's entry in ``DEFAULT_LR``), momentum and weight decay.

    Raises
    ------
    ValueError
        If ``cfg.optimizer`` is not one of sgd, adam, adamw, rmsprop.
    """
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    if cfg.optimizer == "sgd":
        return optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay or 0.01)
    if cfg.optimizer == "rmsprop":
        return optim.RMSprop(params, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    raise ValueError(
        f"train: unknown optimizer {cfg.optimizer!r}; choose from {sorted(DEFAULT_LR)}"
    )


SCHEDULERS = ("none", "step", "cosine", "onecycle")


def build_scheduler(
    cfg: TrainConfig, opt: optim.Optimizer, steps_per_epoch: int
) -> lr_scheduler.LRScheduler | None:
    """A per-batch schedule over the whole run (``--warmup N`` batches in front of it):
    ``cfg.epochs`` epochs, or ``cfg.max_steps`` steps when that comes first."""
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    total = max(total, 2)
    sched: lr_scheduler.LRScheduler | None
    if cfg.scheduler == "none":
        sched = None
    elif cfg.scheduler == "step":
        # divide by 10 after each third of the run
        sched = lr_scheduler.StepLR(opt, step_size=max(total // 3, 1), gamma=0.1)
    elif cfg.scheduler == "cosine":
        sched = lr_scheduler.CosineAnnealingLR(opt, T_max=max(total - cfg.warmup, 1))
    elif cfg.scheduler == "onecycle":
        sched = lr_scheduler.OneCycleLR(opt, max_lr=opt.lr, total_steps=total)
    else:
        raise ValueError(f"train: unknown scheduler {cfg.scheduler!r}; choose from {SCHEDULERS}")
    if cfg.warmup:
        sched = lr_scheduler.LinearWarmup(opt, cfg.warmup, after=sched)
    return sched


def model_input_size(model_name: str, data_side: int = 0) -> int:
    """The side the model is built for: its default, or the data's side when larger
    (CIFAR-10's 32x32 images train LeNet-5 built for 32 rather than being shrunk)."""
    return max(zoo.DEFAULT_INPUT.get(model_name, 28), data_side)


def model_kwargs(x: np.ndarray) -> dict[str, int]:
    """Builder arguments matching prepared images x (N, C, S, S)."""
    return {"in_channels": int(x.shape[1]), "input_size": int(x.shape[-1])}


def prepare_arrays(
    cfg: TrainConfig, split: str, normalise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load a split, cut it to the limit, pad/resize to the model's input, normalise.

    Done once on the whole array (one pass, no per-batch cost); the loaders then hand
    out views or one gather per batch.
    """
    limit = cfg.limit_train if split == "train" else cfg.limit_test
    x, y = data.load_dataset(cfg.data, split, cfg.data_dir, limit)
    side = model_input_size(cfg.model, x.shape[-1])
    if x.shape[-1] < side:
        x = data.Pad((side - x.shape[-1]) // 2)(x)
    elif x.shape[-1] > side:
        x = data.resize_bilinear(x, side)
    if normalise:
        mean, std = _NORMALISE[cfg.data]
        if len(mean) != x.shape[1]:
            mean, std = mean[:1] * x.shape[1], std[:1] * x.shape[1]
        # in place: x is this function's own float32 array (no 180 MB temporaries)
        x -= np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        x /= np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray(x, dtype=np.float32), y


def is_reconstruction(model: Module) -> bool:
    """True for models trained to reproduce their input (``task = "reconstruction"``)."""
    inner = getattr(model, "module", None)  # a data-parallel wrapper keeps the model here
    task = getattr(model, "task", None) or getattr(inner, "task", "classification")
    return task == "reconstruction"


@dataclass
class EpochStats:
    """One training epoch's mean loss, accuracy (None for reconstruction), image count and
    seconds; ``complete`` is False when ``max_steps`` cut the epoch short.
    """

    loss: float
    accuracy: float | None
    images: int
    seconds: float
    complete: bool = True

    @property
    def images_per_s(self) -> float:
        """Training throughput of the epoch (NaN if it took no measurable time)."""
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def evaluate(
    model: Module, loader: data.DataLoader, reconstruction: bool = False
) -> tuple[float, float | None]:
    """Mean loss and accuracy (None for reconstruction) over a loader, without recording."""
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with no_grad():
        for xb, yb in loader:
            x = Tensor._from_op(xb)
            out = model(x)
            n = xb.shape[0]
            if reconstruction:
                total_loss += float(F.mse_loss(out, x).item()) * n
            else:
                total_loss += float(F.cross_entropy(out, yb).item()) * n
                correct += int((out.data.argmax(axis=1) == yb).sum())
            seen += n
    model.train(was_training)
    seen = max(seen, 1)
    return total_loss / seen, None if reconstruction else correct / seen


def confusion_matrix(
    model: Module, loader: data.DataLoader, num_classes: int | None = None
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy loss and the confusion matrix of a classifier over a loader.

    Parameters
    ----------
    model : Module
        A classifier: logits of shape (N, C).
    loader : DataLoader
        Batches of images and integer labels.
    num_classes : int, optional
        Rows and columns of the matrix; default the model's number of outputs.

    Returns
    -------
    (float, numpy.ndarray)
        The loss, and an int64 (C, C) matrix whose entry ``[t, p]`` counts the images of
        true class ``t`` predicted as ``p`` (rows: true class; the diagonal is correct).

    Raises
    ------
    ValueError
        A label outside ``[0, num_classes)``.
    """
    was_training = model.training
    model.eval()
    total_loss, seen = 0.0, 0
    cm: np.ndarray | None = None
    with no_grad():
        for xb, yb in loader:
            out = model(Tensor._from_op(xb))
            c = num_classes or int(out.shape[1])
            cm = np.zeros((c, c), np.int64) if cm is None else cm
            y = np.asarray(yb, np.int64)
            if y.size and (y.min() < 0 or y.max() >= c):
                raise ValueError(
                    f"confusion_matrix: labels must lie in [0, {c - 1}], found "
                    f"{int(y[(y < 0) | (y >= c)][0])}"
                )
            total_loss += float(F.cross_entropy(out, yb).item()) * xb.shape[0]
            np.add.at(cm, (y, out.data.argmax(axis=1)), 1)
            seen += xb.shape[0]
    model.train(was_training)
    if cm is None:
        cm = np.zeros((num_classes or 0,) * 2, np.int64)
    return total_loss / max(seen, 1), cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Each class's accuracy (recall) from a confusion matrix: diagonal / row sum, float64
    (C,); NaN for a class without images."""
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def write_confusion_csv(cm: np.ndarray, names: Sequence[str], path: str | os.PathLike) -> None:
    """A confusion matrix as CSV: a header of predicted class names, then one row per true
    class (its name, then the counts)."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *names])
        for name, row in zip(names, np.asarray(cm)):
            w.writerow([name, *(int(v) for v in row)])


def plot_confusion(
    cm: np.ndarray, names: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Draw a confusion matrix (rows: true class, columns: predicted; colour: the share of
    the row, text: the count) and save it (PNG, SVG or PDF by the suffix).

    Raises
    ------
    ImportError
        matplotlib is not installed (the ``plot`` extra).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    c = cm.shape[0]
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.6 * c + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(c), labels=list(names), rotation=45, ha="right")
    ax.set_yticks(range(c), labels=list(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for t in range(c):
        for p in range(c):
            if cm[t, p]:
                colour = "white" if share[t, p] > 0.5 else "black"
                ax.text(p, t, str(cm[t, p]), ha="center", va="center", color=colour, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def apply_threads(cfg: TrainConfig) -> None:
    """Set the kernel and BLAS thread count to ``cfg.threads`` (if given)."""
    if cfg.threads:
        set_num_threads(cfg.threads)


def seed_run(cfg: TrainConfig) -> None:
    """Seed tapegrad's generator and the dropout stream from ``cfg.seed``."""
    creation.manual_seed(cfg.seed)


def build_augmentation(cfg: TrainConfig, side: int) -> data.Compose | None:
    """The training transform for ``--augment``: a random crop of ``side`` after padding
    by 2 (and a horizontal flip on CIFAR-10); None without ``cfg.augment``."""
    if not cfg.augment:
        return None
    steps: list[Any] = [data.RandomCrop(side, padding=2)]
    if cfg.data == "cifar10":
        steps.append(data.RandomHorizontalFlip())
    return data.Compose(steps)


def build_loaders(
    cfg: TrainConfig, rank: int = 0, world_size: int = 1, normalise: bool = True
) -> tuple[data.DataLoader, data.DataLoader]:
    """The run's train loader (shuffled by ``cfg.seed``, augmented, this rank's shard) and
    test loader (in order, ``cfg.eval_batch_size``), over :func:`prepare_arrays`."""
    xtr, ytr = prepare_arrays(cfg, "train", normalise)
    xte, yte = prepare_arrays(cfg, "test", normalise)
    train_set = data.TensorDataset(xtr, ytr, transform=build_augmentation(cfg, xtr.shape[-1]))
    train = data.DataLoader(
        train_set, cfg.batch_size, shuffle=True, seed=cfg.seed, rank=rank, world_size=world_size
    )
    test = data.DataLoader(data.TensorDataset(xte, yte), cfg.eval_batch_size)
    return train, test


def default_callbacks(cfg: TrainConfig) -> list[cb.Callback]:
    """The callbacks ``tapegrad train`` runs with: :class:`~tapegrad.callbacks.CSVLogger`,
    :class:`~tapegrad.callbacks.BestCheckpoint` on ``cfg.monitor``,
    :class:`~tapegrad.callbacks.EarlyStopping` with patience ``cfg.early_stop`` (if set) and
    :class:`~tapegrad.callbacks.TensorBoardLogger` (if ``cfg.tensorboard``).

    Raises
    ------
    ValueError
        An unknown ``cfg.monitor``, a patience below 1.
    ImportError
        ``cfg.tensorboard`` without tensorboardX installed (the message names the extra).
    """
    out: list[cb.Callback] = [cb.CSVLogger(), cb.BestCheckpoint(cfg.monitor)]
    if cfg.early_stop is not None:
        out.append(cb.EarlyStopping(cfg.monitor, patience=cfg.early_stop))
    if cfg.tensorboard:
        out.append(cb.TensorBoardLogger())
    return out


def build_model(cfg: TrainConfig) -> Module:
    """The zoo model ``cfg.model``, initialised from ``cfg.seed`` (whatever ran before), with
    the channels and side recorded in ``cfg.extra["model_kwargs"]``."""
    creation.manual_seed(cfg.seed)
    return zoo.get_model(cfg.model, **cfg.extra.get("model_kwargs", {}))


class Trainer:
    """One training run: model + optimizer + scheduler + loaders + run directory.

    Composed of small steps, each a function of this module that can be used alone:
    :func:`apply_threads`, :func:`seed_run`, :func:`build_loaders` (with
    :func:`build_augmentation`), ``check_config`` (data-parallel runs: every rank agrees),
    :func:`build_model`, ``wrap_model`` (e.g. ``DataParallel``), :func:`build_optimizer`
    and :func:`build_scheduler`. A ``model`` or loaders given here replace the built ones;
    ``callbacks`` (default: :func:`default_callbacks`) replace the default ones.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: Module | None = None,
        train_loader: data.DataLoader | None = None,
        test_loader: data.DataLoader | None = None,
        grad_hook: Callable[[list[Any]], None] | None = None,
        is_main: bool = True,
        rank: int = 0,
        world_size: int = 1,
        log: Callable[[str], None] | None = None,
        wrap_model: Callable[[Module], Module] | None = None,
        check_config: Callable[[dict[str, Any]], None] | None = None,
        callbacks: Sequence[cb.Callback] | None = None,
    ) -> None:
        self.cfg = cfg
        if cfg.max_steps is not None and cfg.max_steps < 1:
            raise ValueError(f"Trainer: max_steps must be >= 1, got {cfg.max_steps}")
        self.callbacks = list(default_callbacks(cfg) if callbacks is None else callbacks)
        keys = [c.key() for c in self.callbacks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"Trainer: two callbacks share a name: {keys}")
        apply_threads(cfg)
        seed_run(cfg)
        if train_loader is None or test_loader is None:
            recon = (
                is_reconstruction(model)
                if model is not None
                else zoo.task_of(cfg.model) == "reconstruction"
            )
            built_train, built_test = build_loaders(cfg, rank, world_size, normalise=not recon)
            if model is None:
                # channels and side follow the data; kept in the config for `tapegrad eval`
                cfg.extra["model_kwargs"] = model_kwargs(built_train.dataset.arrays[0])
            train_loader = built_train if train_loader is None else train_loader
            test_loader = built_test if test_loader is None else test_loader
        self.train_loader, self.test_loader = train_loader, test_loader
        if check_config is not None:  # e.g. every rank of a data-parallel job must agree
            check_config(self.fingerprint())
        model = build_model(cfg) if model is None else model
        if wrap_model is not None:  # e.g. distributed.DataParallel, around the built model
            model = wrap_model(model)
        self.model = model
        self.reconstruction = is_reconstruction(self.model)
        self.params = list(self.model.parameters())
        self.optimizer = build_optimizer(cfg, self.params)
        self.scheduler = build_scheduler(cfg, self.optimizer, len(self.train_loader))
        self.grad_hook = grad_hook
        self.is_main = is_main
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken
        self._skip = 0  # batches of the current epoch already trained (a mid-epoch resume)
        self.should_stop = False  # set by a callback (early stopping) to end fit()
        self.stop_reason = ""
        self.history: list[dict[str, Any]] = []
        self.out = Path(cfg.out) if cfg.out else None
        self.log = log or (lambda msg: print(msg, flush=True))

    def fingerprint(self) -> dict[str, Any]:
        """What every replica of a data-parallel run must agree on: model, schedule,
        (global) batch size, optimiser, seed and the lengths of the data sets."""
        cfg = self.cfg
        fields = ("model", "data", "epochs", "lr", "optimizer", "momentum", "weight_decay")
        fields += ("scheduler", "warmup", "seed", "augment", "max_steps")
        fp: dict[str, Any] = {k: getattr(cfg, k) for k in fields}
        fp["batch_size"] = cfg.extra.get("global_batch_size", cfg.batch_size)
        fp["train_samples"] = len(self.train_loader.dataset)
        fp["test_samples"] = len(self.test_loader.dataset)
        return fp

    # --- one batch --------------------------------------------------------------------
    def loss_of(self, xb: np.ndarray, yb: np.ndarray) -> tuple[Tensor, Tensor]:
        """The loss and the model's output for one batch (images ``xb``, labels ``yb``)."""
        x = Tensor._from_op(xb)  # the batch array is used as is: no copy
        out = self.model(x)
        loss = F.mse_loss(out, x) if self.reconstruction else F.cross_entropy(out, yb)
        return loss, out

    def train_step(self, xb: np.ndarray, yb: np.ndarray) -> tuple[float, int]:
        """Forward, backward, ``grad_hook``, optimizer and scheduler step.

        Returns (loss, number of correct predictions; 0 for reconstruction).
        """
        self.optimizer.zero_grad()
        loss, out = self.loss_of(xb, yb)
        loss.backward()
        if self.grad_hook is not None:
            self.grad_hook(self.params)  # after backward, before the update
        self.optimizer.step()
        self.step += 1
        if self.scheduler is not None:
            self.scheduler.step()
        correct = 0 if self.reconstruction else int((out.data.argmax(axis=1) == yb).sum())
        return float(loss.item()), correct

    # --- one epoch --------------------------------------------------------------------
    def train_epoch(self) -> EpochStats:
        """Train one epoch over the training loader (with a progress bar unless disabled).

        Stops early once ``cfg.max_steps`` optimiser steps are taken (``complete`` False);
        after a mid-epoch resume, the batches already trained are drawn and skipped.
        """
        from tqdm import tqdm

        self.model.train()
        self.train_loader.set_epoch(self.epoch)
        total_loss, correct, seen = 0.0, 0, 0
        skip, self._skip = self._skip, 0
        max_steps, complete = self.cfg.max_steps, True
        t0 = time.perf_counter()
        bar = tqdm(
            self.train_loader,
            total=len(self.train_loader),
            desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
            unit="batch",
            disable=not (self.is_main and self.cfg.progress),
            leave=True,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        for i, (xb, yb) in enumerate(bar):
            if i < skip:  # drawn (augmentation replays the same way) but trained already
                continue
            if max_steps is not None and self.step >= max_steps:
                complete = False
                break
            loss, c = self.train_step(xb, yb)
            for callback in self.callbacks:
                callback.on_train_batch_end(self, loss)
            n = xb.shape[0]
            total_loss += loss * n
            correct += c
            seen += n
            if i % 10 == 0 or i == len(self.train_loader) - 1:
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                post = {"loss": f"{total_loss / seen:.4f}"}
                if not self.reconstruction:
                    post["acc"] = f"{correct / seen:.3f}"
                post["img/s"] = f"{rate:.0f}"
                bar.set_postfix(post, refresh=False)
        bar.close()
        dt = time.perf_counter() - t0
        seen = max(seen, 1)
        return EpochStats(
            total_loss / seen, None if self.reconstruction else correct / seen, seen, dt, complete
        )

    def fit(self, stop_after: int | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs; return the metrics of every evaluation of the run.

        ``stop_after`` ends the call once that many epochs are complete (a time-boxed
        session); a later ``resume`` + ``fit()`` continues the same run. The run also ends
        after ``cfg.max_steps`` optimiser steps (the cut epoch is evaluated, its row has
        ``partial`` True, and ``last.safetensors`` is written) or when a callback sets
        ``should_stop`` (early stopping); ``stop_reason`` then says why.
        """
        if self.out is not None and self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        last = self.cfg.epochs if stop_after is None else min(stop_after, self.cfg.epochs)
        try:
            for callback in self.callbacks:
                callback.on_fit_start(self)
            while self.epoch < last and not self._done():
                self._run_epoch()
        finally:
            for callback in self.callbacks:
                callback.on_fit_end(self)
        if self.stop_reason and self.is_main:
            self.log(self.stop_reason)
        return self.history

    def _done(self) -> bool:
        """True once the run must end: a callback stopped it, or ``max_steps`` is reached."""
        max_steps = self.cfg.max_steps
        if max_steps is not None and self.step >= max_steps and not self.stop_reason:
            self.stop_reason = f"stopped after {self.step} optimiser steps (max_steps)"
        return self.should_stop or (max_steps is not None and self.step >= max_steps)

    def _run_epoch(self) -> None:
        """Train (the rest of) an epoch, evaluate, then log, call back and checkpoint."""
        stats = self.train_epoch()
        test_loss, test_acc = evaluate(self.model, self.test_loader, self.reconstruction)
        if stats.complete:
            self.epoch += 1
        row = {
            "epoch": self.epoch if stats.complete else self.epoch + 1,
            "step": self.step,
            "train_loss": stats.loss,
            "train_accuracy": stats.accuracy,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "lr": self.optimizer.lr,
            "images_per_s": stats.images_per_s,
            "epoch_seconds": stats.seconds,
            "partial": not stats.complete,
        }
        self.history.append(row)
        if self.is_main:
            where = f"epoch {row['epoch']}" + ("" if stats.complete else f" (step {self.step})")
            if self.reconstruction:
                self.log(
                    f"{where}: train MSE {stats.loss:.5f}, test MSE "
                    f"{test_loss:.5f}, {stats.images_per_s:.0f} images/s"
                )
            else:
                self.log(
                    f"{where}: train loss {stats.loss:.4f}, test loss "
                    f"{test_loss:.4f}, test accuracy {100 * test_acc:.2f}%, "
                    f"{stats.images_per_s:.0f} images/s"
                )
        for callback in self.callbacks:
            callback.on_epoch_end(self, row)
        if self.is_main and self.out is not None:
            self._write_epoch(row)

    # --- run directory ----------------------------------------------------------------
    def _write_epoch(self, row: dict[str, Any]) -> None:
        assert self.out is not None
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        state = self.state_dict()
        meta = {cb.STEP_KEY: str(self.step)}
        checkpoint.save(state, self.out / "last.safetensors", metadata=meta)
        if not row["partial"]:
            checkpoint.save(state, self.out / f"epoch{self.epoch}.safetensors", metadata=meta)
        for callback in self.callbacks:
            callback.on_checkpoint(self, state)
        if self.cfg.plot:
            rows = read_metrics(self.out / "metrics.jsonl")
            plot_curves(rows, self.out / "curves.png", self.log)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs: model, optimiser, scheduler, epoch and step counters,
        the callbacks' state (by name), RNG state, config."""
        return {
            "model": dict(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "callbacks": {c.key(): c.state_dict() for c in self.callbacks},
            "rng": _rng_state(),
            "config": asdict(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. A checkpoint from a run with another schedule (more
        epochs, another ``max_steps``, say) follows this run's schedule from the resumed
        step instead. A checkpoint taken mid-epoch (``max_steps``) continues that epoch
        after the batches it had trained.
        """
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        per_epoch = len(self.train_loader)
        self.step = int(state.get("step", self.epoch * per_epoch))
        into_epoch = self.step - self.epoch * per_epoch
        self._skip = into_epoch if 0 < into_epoch < per_epoch else 0
        saved_callbacks = state.get("callbacks") or {}
        for callback in self.callbacks:
            if callback.key() in saved_callbacks:
                callback.load_state_dict(saved_callbacks[callback.key()])
        saved = state.get("config") or {}
        same_schedule = all(
            saved.get(k, getattr(self.cfg, k)) == getattr(self.cfg, k)
            for k in ("epochs", "scheduler", "warmup", "batch_size", "max_steps")
        )
        if self.scheduler is not None:
            if same_schedule and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            else:
                # a longer (or otherwise different) run: this run's schedule, positioned
                # at the resumed epoch, instead of the old run's (which may have ended)
                if self.is_main:
                    self.log(
                        f"resume: checkpoint from a run with epochs={saved.get('epochs')}, "
                        f"scheduler={saved.get('scheduler')}; following this run's "
                        f"{self.cfg.scheduler} schedule from epoch {self.epoch}"
                    )
                for _ in range(self.step):
                    self.scheduler.step()
        _set_rng_state(state.get("rng") or {})

    def resume(self, path: str | os.PathLike) -> None:
        """Load the training checkpoint at ``path`` and continue from its epoch; the run
        directory's ``metrics.jsonl`` keeps only the epochs the checkpoint covers.

        Raises
        ------
        ValueError
            If the file is not a training checkpoint (no ``model``/``epoch`` entries).
        """
        state = checkpoint.load(path)
        if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
            raise ValueError(
                f"train: {path} is not a training checkpoint (no 'model'/'epoch' entries)"
            )
        self.load_state_dict(state)
        if self.out is not None and (self.out / "metrics.jsonl").exists():
            # keep the lines of the steps the checkpoint covers, drop any later ones
            rows = [r for r in read_metrics(self.out / "metrics.jsonl") if self._covers(r)]
            self.history = rows
            (self.out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def _covers(self, row: dict[str, Any]) -> bool:
        """True if a metrics row comes from before the resumed point."""
        if "step" in row:
            return int(row["step"]) <= self.step
        return int(row["epoch"]) <= self.epoch


def _rng_state() -> dict[str, Any]:
    """tapegrad's NumPy generator and the dropout stream's (seed, step)."""
    state: dict[str, Any] = {"tapegrad": creation.generator().bit_generator.state}
    try:
        from .ops import dropout as _dropout

        state["dropout"] = list(_dropout.rng_state())
    except ImportError:  # pragma: no cover - dropout family absent
        pass
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    if state.get("tapegrad") is not None:
        creation.generator().bit_generator.state = state["tapegrad"]
    if state.get("dropout") is not None:
        from .ops import dropout as _dropout

        seed, step = (int(v) for v in state["dropout"])
        _dropout.set_rng_state(seed, step)  # continue the stream where the run stopped


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (one dict per epoch)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


_notice_shown = False


def plot_curves(
    rows: list[dict[str, Any]], path: str | os.PathLike, log: Callable[[str], None] = print
) -> bool:
    """Loss (train, test) and test accuracy per epoch as a PNG; False without matplotlib."""
    global _notice_shown
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not _notice_shown:
            log("matplotlib is not installed: no curves PNG (pip install tapegrad[plot])")
            _notice_shown = True
        return False
    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax1.plot(epochs, [r["test_loss"] for r in rows], "s-", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    if rows and rows[0].get("test_accuracy") is not None:
        ax2.plot(epochs, [100 * r["train_accuracy"] for r in rows], "o-", label="train")
        ax2.plot(epochs, [100 * r["test_accuracy"] for r in rows], "s-", label="test")
        ax2.set_ylabel("accuracy (%)")
        ax2.legend()
    else:
        ax2.plot(epochs, [r["images_per_s"] for r in rows], "o-")
        ax2.set_ylabel("images/s")
    ax2.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
