"""Training callbacks: small pieces that watch a :class:`~tapegrad.train.Trainer` run.

A callback overrides any of the hooks of :class:`Callback`; the Trainer calls them in list
order on every rank (the ones that write files do so only on the main rank). Each keeps
what a resumed run needs in :meth:`Callback.state_dict`, which the Trainer saves into every
checkpoint under ``callbacks/<name>`` and gives back on resume, so a resumed run stops, and
keeps its best checkpoint, exactly as an uninterrupted one would.

- :class:`EarlyStopping` ends the run when a metric has not improved for ``patience``
  epochs;
- :class:`BestCheckpoint` keeps the checkpoint of the best evaluation so far
  (``RUN_DIR/best.safetensors``);
- :class:`CSVLogger` writes ``RUN_DIR/metrics.csv``, one row per evaluation;
- :class:`TensorBoardLogger` writes TensorBoard event files (needs tensorboardX, the
  ``tensorboard`` extra).

Metrics are named as ``--monitor`` names them (:data:`MONITORS`): ``val_loss`` and
``val_acc`` are the loss and accuracy on the evaluation set after each epoch (the test
split, cut by ``limit_test``); ``train_loss`` and ``train_acc`` those of the epoch's
training batches. Any key of a metrics row works too, with an explicit ``mode``.

Example
-------
>>> from tapegrad.callbacks import EarlyStopping, BestCheckpoint
>>> from tapegrad.train import TrainConfig, Trainer, default_callbacks
>>> cfg = TrainConfig(model="lenet5", epochs=20, out="runs/lenet5")  # doctest: +SKIP
>>> callbacks = default_callbacks(cfg) + [EarlyStopping("val_acc", patience=3)]  # doctest: +SKIP
>>> Trainer(cfg, callbacks=callbacks).fit()  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .train import Trainer

# --monitor name -> (key of a metrics row, the direction that is better)
MONITORS: dict[str, tuple[str, str]] = {
    "val_loss": ("test_loss", "min"),
    "val_acc": ("test_accuracy", "max"),
    "train_loss": ("train_loss", "min"),
    "train_acc": ("train_accuracy", "max"),
}

BEST = "best.safetensors"
STEP_KEY = "tapegrad.step"  # checkpoint metadata: the optimiser step the state was taken at


class Callback:
    """Base class: every hook does nothing. Override the ones you need.

    ``name`` keys the callback's state in checkpoints (default: the class name); two
    callbacks of a Trainer must not share it.
    """

    name: str = ""

    def key(self) -> str:
        """The name this callback's state is saved under."""
        return self.name or type(self).__name__

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called when :meth:`Trainer.fit` starts (after a resume has been loaded)."""

    def on_train_batch_end(self, trainer: Trainer, loss: float) -> None:
        """Called after each optimiser step (``trainer.step`` counts them) with its loss."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """Called after each evaluation with its metrics row (``row["partial"]`` is True
        for the evaluation of an epoch cut short by ``max_steps``)."""

    def on_checkpoint(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """Called after the main rank saved ``state`` as ``last.safetensors``."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """Called when :meth:`Trainer.fit` returns or raises."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue as this one would (JSON-able values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""


def resolve_monitor(monitor: str, mode: str | None = None) -> tuple[str, str]:
    """The metrics-row key and the mode (``"min"`` or ``"max"``) of a monitored metric.

    Parameters
    ----------
    monitor : str
        A name of :data:`MONITORS` (``val_loss``, ``val_acc``, ``train_loss``,
        ``train_acc``), or any key of a metrics row when ``mode`` is given.
    mode : {"min", "max"}, optional
        Which direction is better; by default the metric's own.

    Raises
    ------
    ValueError
        An unknown metric without a mode, or a mode other than min/max.
    """
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"monitor: mode must be 'min' or 'max', got {mode!r}")
    if monitor in MONITORS:
        key, own = MONITORS[monitor]
        return key, mode or own
    if mode is None:
        raise ValueError(
            f"monitor: unknown metric {monitor!r}; choose from {sorted(MONITORS)} "
            "(or give mode='min'/'max' for another key of the metrics rows)"
        )
    return monitor, mode


def saved_step(path: str | os.PathLike) -> int | None:
    """The optimiser step a Trainer checkpoint was saved at (its metadata), or None."""
    from . import checkpoint

    try:
        return int(checkpoint.metadata(path)[STEP_KEY])
    except (OSError, ValueError, KeyError):
        return None


class _Tracker:
    """The best value of a metric so far and the evaluation it came from."""

    def __init__(self, monitor: str, mode: str | None, min_delta: float) -> None:
        if not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"monitor: min_delta must be a finite number >= 0, got {min_delta}")
        self.monitor = monitor
        self.metric, self.mode = resolve_monitor(monitor, mode)
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_step: int | None = None

    def value(self, row: dict[str, Any]) -> float | None:
        if self.metric not in row:
            raise KeyError(
                f"monitor {self.monitor!r}: the metrics rows have no {self.metric!r} "
                f"(they have {sorted(row)})"
            )
        v = row[self.metric]
        if v is None:
            raise ValueError(
                f"monitor {self.monitor!r}: this run has no {self.metric} "
                "(a reconstruction model has no accuracy; monitor val_loss)"
            )
        return float(v)

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, row: dict[str, Any]) -> bool:
        """Record the row's value; True if it is a new best."""
        value = self.value(row)
        if value is None or not self.improved(value):
            return False
        self.best, self.best_epoch, self.best_step = value, row.get("epoch"), row.get("step")
        return True

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_step": self.best_step}

    def load(self, state: dict[str, Any]) -> None:
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.best_epoch = state.get("best_epoch")
        self.best_step = state.get("best_step")


class EarlyStopping(Callback):
    """Stop the run when ``monitor`` has not improved for ``patience`` epochs in a row.

    Parameters
    ----------
    monitor : str
        The metric (see :func:`resolve_monitor`); default ``val_loss``.
    patience : int
        Epochs without improvement that end the run (>= 1).
    mode : {"min", "max"}, optional
        Which direction is better; by default the metric's own (loss: min, accuracy: max).
    min_delta : float
        An improvement must beat the best by more than this.

    Only complete epochs count: the evaluation of an epoch cut short by ``max_steps`` is
    not one. A run resumed from a checkpoint taken after it stopped stops again at once
    (unless resumed with a larger ``patience``).

    Raises
    ------
    ValueError
        ``patience`` below 1, a negative ``min_delta``, an unknown metric.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        mode: str | None = None,
        min_delta: float = 0.0,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 1, got {patience!r}")
        self.tracker = _Tracker(monitor, mode, min_delta)
        self.patience = patience
        self.wait = 0
        self.name = f"EarlyStopping.{monitor}"

    def _stop(self, trainer: Trainer) -> None:
        t = self.tracker
        trainer.should_stop = True
        trainer.stop_reason = (
            f"early stopping: {t.monitor} has not improved for {self.wait} epochs "
            f"(best {t.best:.4f} at epoch {t.best_epoch})"
        )

    def on_fit_start(self, trainer: Trainer) -> None:
        """A resumed run that had already run out of patience stops before training."""
        if self.wait >= self.patience and self.tracker.best is not None:
            self._stop(trainer)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """Count the epochs without improvement; stop the trainer at ``patience``."""
        if row.get("partial"):
            return
        if self.tracker.update(row):
            self.wait = 0
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self._stop(trainer)

    def state_dict(self) -> dict[str, Any]:
        """The best value so far, where it was reached and the epochs waited since."""
        return {**self.tracker.state(), "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.tracker.load(state)
        self.wait = int(state.get("wait", 0))


class BestCheckpoint(Callback):
    """Keep the checkpoint of the best evaluation so far by ``monitor``.

    Each time an evaluation improves on the best, the main rank writes the state the
    Trainer has just saved as ``last.safetensors`` again to ``path`` (default:
    ``RUN_DIR/best.safetensors``): a full training checkpoint, which ``tapegrad eval``
    and ``--resume`` accept.

    Parameters
    ----------
    monitor : str
        The metric (see :func:`resolve_monitor`); default ``val_loss``.
    path : str or os.PathLike, optional
        Where to keep it; default ``best.safetensors`` in the trainer's run directory (no
        file without one).
    mode : {"min", "max"}, optional
        Which direction is better; by default the metric's own.
    min_delta : float
        An improvement must beat the best by more than this.

    A run resumed from an earlier checkpoint puts back the best checkpoint as of that
    point (from ``RUN_DIR/epochN.safetensors``) when the file holds a later one.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        path: str | os.PathLike | None = None,
        mode: str | None = None,
        min_delta: float = 0.0,
    ) -> None:
        self.tracker = _Tracker(monitor, mode, min_delta)
        self.path = Path(path) if path is not None else None
        self.name = f"BestCheckpoint.{monitor}"
        self._improved = False

    def _path(self, trainer: Trainer) -> Path | None:
        if self.path is not None:
            return self.path
        return trainer.out / BEST if trainer.out is not None else None

    def on_fit_start(self, trainer: Trainer) -> None:
        """After a resume: a best checkpoint from beyond the resumed step is put back."""
        path = self._path(trainer)
        want = self.tracker.best_step
        if path is None or not trainer.is_main or trainer.step == 0 or want is None:
            return
        if not path.is_file() or saved_step(path) == want:
            return
        source = None
        if trainer.out is not None and self.tracker.best_epoch is not None:
            source = trainer.out / f"epoch{self.tracker.best_epoch}.safetensors"
        if source is not None and source.is_file() and saved_step(source) == want:
            tmp = path.with_name(f".{path.name}.restore.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        else:  # the best as of the resumed step is nowhere on disk: no stale file
            path.unlink()
            trainer.log(f"{path} held a best checkpoint from after the resumed step: removed")

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """Note whether this evaluation is the best so far."""
        self._improved = self.tracker.update(row)

    def on_checkpoint(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """Write the just-saved state to the best checkpoint if it improved."""
        from . import checkpoint

        path = self._path(trainer)
        if not self._improved or path is None or not trainer.is_main:
            return
        self._improved = False
        checkpoint.save(state, path, metadata={STEP_KEY: str(trainer.step)})

    def state_dict(self) -> dict[str, Any]:
        """The best value so far and the epoch and step it was reached at."""
        return self.tracker.state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.tracker.load(state)


CSV_NAME = "metrics.csv"


class CSVLogger(Callback):
    """The run's metrics as CSV (default ``RUN_DIR/metrics.csv``), one row per evaluation.

    The file is rewritten from ``trainer.history`` after each evaluation, so after a
    resume it holds exactly the evaluations the resumed checkpoint covers and the new
    ones. Columns: ``epoch``, ``step``, the train and test loss and accuracy, ``lr``,
    ``images_per_s``, ``epoch_seconds`` and ``partial`` (1 for an epoch cut short by
    ``max_steps``); an empty cell where a value is None.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None

    def _write(self, trainer: Trainer) -> None:
        path = self.path or (trainer.out / CSV_NAME if trainer.out is not None else None)
        if path is not None and trainer.is_main and trainer.history:
            write_metrics_csv(trainer.history, path)

    def on_fit_start(self, trainer: Trainer) -> None:
        """After a resume: the CSV holds the evaluations the checkpoint covers."""
        self._write(trainer)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """Rewrite the CSV from the run's history (main rank, with a run directory)."""
        self._write(trainer)


def write_metrics_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write metrics rows as CSV: the keys in first-seen order, None as an empty cell,
    booleans as 0/1. Written to a temporary file and renamed over ``path``."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if row.get(k) is None else _cell(row[k]) for k in columns])
    os.replace(tmp, path)


def _cell(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v


TENSORBOARD_HINT = "pip install 'tapegrad[tensorboard]'"

# metrics-row key -> TensorBoard tag
TB_TAGS = {
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_accuracy": "accuracy/train",
    "test_accuracy": "accuracy/test",
    "lr": "lr",
    "images_per_s": "images_per_s",
    "epoch": "epoch",
}


def require_tensorboardx() -> Any:
    """The ``tensorboardX`` module.

    Raises
    ------
    ImportError
        tensorboardX is not installed; the message names the extra that installs it.
    """
    try:
        import tensorboardX
    except ImportError as e:
        raise ImportError(f"TensorBoard logging needs tensorboardX: {TENSORBOARD_HINT}") from e
    return tensorboardX


class TensorBoardLogger(Callback):
    """Scalars as TensorBoard event files (``tensorboard --logdir runs`` shows every run).

    After each evaluation: ``loss/train``, ``loss/test``, ``accuracy/train``,
    ``accuracy/test``, ``lr``, ``images_per_s`` and ``epoch``; every ``log_every``
    optimiser steps: ``loss/train_batch``. The x axis is the optimiser step. A resumed
    run marks the step after the resumed one as a restart (a ``SessionLog.START`` event),
    so TensorBoard drops the earlier files' events from that step on (those of the run
    that was cut short).

    Parameters
    ----------
    logdir : str or os.PathLike, optional
        Directory for the event files; default the trainer's run directory.
    log_every : int
        Optimiser steps between ``loss/train_batch`` points (>= 1).

    Raises
    ------
    ImportError
        tensorboardX is not installed (the ``tensorboard`` extra).
    ValueError
        ``log_every`` below 1.
    """

    def __init__(self, logdir: str | os.PathLike | None = None, log_every: int = 10) -> None:
        require_tensorboardx()
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise ValueError(
                f"TensorBoardLogger: log_every must be an integer >= 1, got {log_every!r}"
            )
        self.logdir = Path(logdir) if logdir is not None else None
        self.log_every = log_every
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Open the event file (main rank, with a log directory)."""
        logdir = self.logdir or trainer.out
        if logdir is None or not trainer.is_main:
            return
        from tensorboardX import SummaryWriter

        # resumed: TensorBoard drops the earlier files' events after the resumed step
        purge = trainer.step + 1 if trainer.step > 0 else None
        self.writer = SummaryWriter(logdir=str(logdir), purge_step=purge)

    def on_train_batch_end(self, trainer: Trainer, loss: float) -> None:
        """``loss/train_batch`` every ``log_every`` steps."""
        if self.writer is not None and trainer.step % self.log_every == 0:
            self.writer.add_scalar("loss/train_batch", loss, trainer.step)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """The evaluation's scalars at the current step."""
        if self.writer is None:
            return
        for key, tag in TB_TAGS.items():
            v = row.get(key)
            if v is not None and math.isfinite(float(v)):
                self.writer.add_scalar(tag, float(v), trainer.step)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        """Close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
