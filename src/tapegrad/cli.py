"""Command line: ``tapegrad {train,eval,info,bench,experiment}`` (also ``python -m tapegrad``).

``bench`` and ``experiment`` live in ``tapegrad.bench.cli`` and ``tapegrad.experiments.cli``
(each exposes ``add_arguments(parser)`` and ``main(args) -> int``); they are imported only
when their subcommand runs, so a missing or broken one cannot break ``train``.

Errors: every error is one line on stderr naming the argument (or environment variable)
at fault. Exit status 2 for usage errors -- a bad option value, a path that does not
exist or is of the wrong kind, an unknown model or kernel variant -- found before any work
starts; 1 for errors while running (a corrupt checkpoint, one that does not fit the
model, a missing dataset, a failed write). ``--debug`` anywhere on the command line, or
``TAPEGRAD_DEBUG=1``, shows the Python traceback instead.

``train`` without ``--out`` writes to ``runs/MODEL`` (``runs/MODEL-2``, ... when that holds
an earlier run; the folder of the resumed checkpoint with ``--resume``), printed at the
start and the end; ``eval RUN_DIR`` evaluates ``RUN_DIR/last.safetensors``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LAST = "last.safetensors"


class CLIError(Exception):
    """An error the command line reports in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CLIError):
    """A bad argument, option value or environment variable (exit status 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) raised as :class:`UsageError`."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _number(kind: type, low: float, strict: bool, what: str) -> Any:
    """An argparse ``type`` accepting finite ``kind`` values above (or from) ``low``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        bad = not math.isfinite(value) or (value <= low if strict else value < low)
        if bad:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


POSITIVE_INT = _number(int, 0, True, "a positive integer")
NONNEG_INT = _number(int, 0, False, "a non-negative integer")
POSITIVE_FLOAT = _number(float, 0.0, True, "a positive finite number")
NONNEG_FLOAT = _number(float, 0.0, False, "a non-negative finite number")

_DELEGATED = {
    "bench": ("tapegrad.bench.cli", "kernel and model benchmarks"),
    "experiment": ("tapegrad.experiments.cli", "reproducible experiments"),
    "export": ("tapegrad.onnx_cli", "write a trained model as an ONNX file"),
    "predict": ("tapegrad.predict", "top-k classes of PNG/JPEG images"),
    "profile": ("tapegrad.profiler", "per-op times of one training step"),
}


def _add_data_args(p: argparse.ArgumentParser, data_default: str | None = "fashion-mnist") -> None:
    from .data import DATASETS

    p.add_argument(
        "--data",
        default=data_default,
        choices=DATASETS,
        help="dataset" + ("" if data_default else " (default: the checkpoint's, or fashion-mnist)"),
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="directory holding the dataset files (default: /usr/share/datasets/<name>)",
    )
    p.add_argument(
        "--threads", type=POSITIVE_INT, default=None, help="threads for kernels and BLAS"
    )
    p.add_argument(
        "--limit-test", type=POSITIVE_INT, default=None, help="use the first N test images"
    )


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .train import DEFAULT_LR, SCHEDULERS

    p.add_argument("model", help="zoo model name (see `tapegrad info --list`)")
    _add_data_args(p)
    p.add_argument("--epochs", type=POSITIVE_INT, default=1)
    p.add_argument(
        "--batch-size",
        type=POSITIVE_INT,
        default=64,
        help="batch (with --distributed: global, split)",
    )
    p.add_argument(
        "--lr", type=POSITIVE_FLOAT, default=None, help="learning rate (default per optimizer)"
    )
    p.add_argument("--optimizer", default="sgd", choices=sorted(DEFAULT_LR))
    p.add_argument("--momentum", type=NONNEG_FLOAT, default=0.9)
    p.add_argument("--weight-decay", type=NONNEG_FLOAT, default=0.0)
    p.add_argument(
        "--scheduler", default="onecycle", choices=SCHEDULERS, help="per-batch LR schedule"
    )
    p.add_argument("--warmup", type=NONNEG_INT, default=0, help="linear warm-up over N batches")
    p.add_argument("--augment", action="store_true", help="random crop (+ flip on CIFAR-10)")
    p.add_argument("--seed", type=NONNEG_INT, default=0)
    p.add_argument(
        "--out",
        default=None,
        help="run directory: checkpoints, metrics, curves (default: runs/MODEL, or runs/MODEL-N "
        "when that holds an earlier run)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue from a checkpoint (a run directory: its last.safetensors)",
    )
    p.add_argument("--limit-train", type=POSITIVE_INT, default=None, help="use the first N images")
    p.add_argument(
        "--max-steps",
        type=POSITIVE_INT,
        default=None,
        metavar="N",
        help="stop after N optimiser steps (evaluated and checkpointed, even mid-epoch); the "
        "learning-rate schedule spans them",
    )
    p.add_argument(
        "--early-stop",
        type=POSITIVE_INT,
        default=None,
        metavar="PATIENCE",
        help="stop when --monitor has not improved for PATIENCE epochs",
    )
    p.add_argument(
        "--monitor",
        default="val_loss",
        choices=("val_loss", "val_acc"),
        help="metric of --early-stop and of best.safetensors (test-split loss: lower is "
        "better; accuracy: higher is better)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files into the run directory (needs the "
        "tensorboard extra: tensorboardX)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plot", action="store_true", help="no curves.png in the run directory")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training under mpirun (needs tapegrad.distributed and mpi4py)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``tapegrad`` argument parser: ``train``, ``eval``, ``info`` and the delegated
    commands.
    """
    parser = _Parser(prog="tapegrad", description="Train and inspect small CNNs with tapegrad.")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show Python tracebacks of errors (anywhere on the line; or TAPEGRAD_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", help="train a zoo model")
    _add_train_args(p)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a test set")
    p.add_argument(
        "checkpoint",
        help="a .safetensors checkpoint written by `tapegrad train`, or a run directory "
        "(its last.safetensors)",
    )
    _add_data_args(p, data_default=None)
    p.add_argument("--model", default=None, help="zoo model (default: from the checkpoint)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=500)
    p.add_argument(
        "--confusion",
        default=None,
        metavar="PNG",
        help="write the confusion matrix as a picture (.png, .svg or .pdf; needs the plot "
        "extra: matplotlib) and as CSV beside it (same name, .csv)",
    )

    p = sub.add_parser("info", help="layer summary of a zoo model")
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--list", action="store_true", help="list the zoo models")
    p.add_argument("--in-channels", type=POSITIVE_INT, default=None)
    p.add_argument("--input-size", type=POSITIVE_INT, default=None)
    p.add_argument("--num-classes", type=POSITIVE_INT, default=10)

    for name, (module, help_text) in _DELEGATED.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(_delegate=module)
    return parser


def _run_delegated(command: str, module: str, rest: list[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        print(f"tapegrad {command}: {module} is not available ({e})", file=sys.stderr)
        return 2
    p = _Parser(prog=f"tapegrad {command}")
    mod.add_arguments(p)
    return int(mod.main(p.parse_args(rest)) or 0)


def _distributed_options(cfg: Any) -> dict[str, Any]:
    """Trainer keyword arguments from ``tapegrad.distributed.trainer_options(cfg)``.

    The contract: it returns ``grad_hook`` (called with the parameter list after backward,
    before the optimizer step), ``is_main``, ``rank``, ``world_size`` and ``model`` (the
    DataParallel-wrapped model), and turns ``cfg.batch_size`` (the global batch) into the
    per-rank batch.
    """
    try:
        dist = importlib.import_module("tapegrad.distributed")
        return dict(dist.trainer_options(cfg))
    except ImportError as e:  # no mpi4py / MPI library: the message says what to install
        raise SystemExit(f"tapegrad train: --distributed: {e}") from None


def _checkpoint_arg(command: str, arg: str, value: str) -> Path:
    """The checkpoint file an argument names: the file itself, or a run directory's
    ``last.safetensors``; a :class:`UsageError` naming the argument otherwise."""
    path = Path(value)
    where = f"tapegrad {command}: {arg} {value}"
    if path.is_dir():
        if not (path / LAST).is_file():
            raise UsageError(f"{where}: is a directory without a {LAST}")
        return path / LAST
    if not path.exists():
        raise UsageError(f"{where}: no such file")
    if not path.is_file():
        raise UsageError(f"{where}: not a regular file")
    return path


def _load_checkpoint(command: str, arg: str, path: Path) -> Any:
    from . import checkpoint

    try:
        return checkpoint.load(path)
    except (OSError, ValueError) as e:  # CheckpointError is a ValueError
        reason = _one_line(e).removeprefix("tapegrad.load: ")
        reason = reason.removeprefix(f"{path}: ").removeprefix(f"{path} ")
        raise CLIError(f"tapegrad {command}: {arg} {path}: {reason}") from e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e.args[0] if isinstance(e, KeyError) and e.args else e).split())
    return text or type(e).__name__


def _run_of(directory: Path) -> str | None:
    """The model a run directory's ``config.json`` names (None if it has none)."""
    try:
        return json.loads((directory / "config.json").read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return None


def _run_dir(out: str | None, model: str, resume: Path | None) -> Path:
    """``--out`` checked (a directory, or creatable and writable), or the default:
    the resumed checkpoint's run directory, else the first of ``runs/MODEL``,
    ``runs/MODEL-2``, ... that does not exist or is empty (claimed by creating it)."""
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise UsageError(f"tapegrad train: --out {out}: is a file, not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CLIError(
                f"tapegrad train: --out {out}: cannot create the run directory ({e.strerror or e})"
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise CLIError(f"tapegrad train: --out {out}: the run directory is not writable")
        return path
    if resume is not None and _run_of(resume.parent) == model:
        return resume.parent
    runs = Path("runs")
    for i in range(1, 10_000):
        path = runs / (model if i == 1 else f"{model}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            if path.is_dir() and not any(path.iterdir()):
                return path
        except OSError as e:
            raise CLIError(
                f"tapegrad train: cannot create the run directory {path} ({e.strerror or e}); "
                "choose one with --out"
            ) from None
    raise CLIError(f"tapegrad train: {runs}/ holds too many runs of {model}; pass --out")


def cmd_train(args: argparse.Namespace) -> int:
    """``tapegrad train``: build the run from the arguments and train; returns the exit status."""
    from . import zoo
    from .train import TrainConfig

    if args.model not in zoo.MODELS:
        raise UsageError(
            f"tapegrad train: unknown model {args.model!r}; choose from {zoo.available()}"
        )
    if args.monitor == "val_acc" and zoo.task_of(args.model) == "reconstruction":
        raise UsageError(
            f"tapegrad train: --monitor val_acc: {args.model} reconstructs its input and has "
            "no accuracy; use --monitor val_loss"
        )
    if args.tensorboard and importlib.util.find_spec("tensorboardX") is None:
        from .callbacks import TENSORBOARD_HINT

        raise UsageError(
            f"tapegrad train: --tensorboard needs tensorboardX, which is not installed: "
            f"{TENSORBOARD_HINT}"
        )
    resume = _checkpoint_arg("train", "--resume", args.resume) if args.resume else None
    cfg = TrainConfig(
        model=args.model,
        data=args.data,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        scheduler=args.scheduler,
        warmup=args.warmup,
        threads=args.threads,
        seed=args.seed,
        out=args.out,
        augment=args.augment,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        progress=not args.no_progress,
        plot=not args.no_plot,
        max_steps=args.max_steps,
        early_stop=args.early_stop,
        monitor=args.monitor,
        tensorboard=args.tensorboard,
    )
    kwargs = _distributed_options(cfg) if args.distributed else {}
    if not args.distributed:
        return _train_in_run_dir(args, cfg, kwargs, resume)
    from . import distributed as dist

    # a rank that stops must end the whole job: the others may be waiting for it in a
    # collective they can never leave (MPI_Abort prints this rank's reason and ends all)
    try:
        rc = _train_in_run_dir(args, cfg, kwargs, resume)
    except Exception as e:
        if _DEBUG:
            traceback.print_exc()
        if isinstance(e, (CLIError, dist.ConfigMismatchError)):  # their message says it all
            dist.abort(_one_line(e), e.code if isinstance(e, CLIError) else 1)
        dist.abort(f"tapegrad train: {type(e).__name__}: {_one_line(e)}")
    if rc:
        dist.abort(f"tapegrad train: stopped with exit status {rc}", rc)
    return rc


def _train_in_run_dir(
    args: argparse.Namespace, cfg: Any, kwargs: dict[str, Any], resume: Path | None
) -> int:
    """Pick (and print) the run directory on the main rank, then train in it."""
    is_main = kwargs.get("is_main", True)
    out = _run_dir(args.out, args.model, resume) if is_main or args.out else None
    cfg.out = str(out) if out is not None else None
    if is_main:
        print(f"run directory: {out}", flush=True)
    try:
        return _train(cfg, kwargs, resume, out)
    finally:
        if out is not None and args.out is None:
            try:
                out.rmdir()  # only if the run failed before writing anything
            except OSError:
                pass


def _train(cfg: Any, kwargs: dict[str, Any], resume: Path | None, out: Path | None) -> int:
    from .callbacks import BEST, BestCheckpoint
    from .data import DatasetNotFoundError
    from .train import Trainer

    try:
        trainer = Trainer(cfg, **kwargs)
    except DatasetNotFoundError as e:
        raise CLIError(f"tapegrad train: {_one_line(e)}") from e
    if resume is not None:
        try:
            trainer.resume(resume)
        except (OSError, KeyError, ValueError, TypeError) as e:
            reason = _one_line(e).removeprefix("tapegrad.load: ")
            reason = reason.removeprefix(f"{resume}: ").removeprefix(f"{resume} ")
            raise CLIError(f"tapegrad train: --resume {resume}: {reason}") from e
        if trainer.is_main:
            mid = trainer.step - trainer.epoch * len(trainer.train_loader)
            at = f" and {mid} steps of epoch {trainer.epoch + 1}" if mid > 0 else ""
            print(f"resumed from {resume} after epoch {trainer.epoch}{at}", flush=True)
    history = trainer.fit()
    if trainer.is_main and history:
        last = history[-1]
        if last["test_accuracy"] is not None:
            print(f"test accuracy: {100 * last['test_accuracy']:.2f}%")
        else:
            print(f"test MSE: {last['test_loss']:.5f}")
    if trainer.is_main and out is not None:
        best = next((c for c in trainer.callbacks if isinstance(c, BestCheckpoint)), None)
        if best is not None and best.tracker.best is not None and (out / BEST).is_file():
            t = best.tracker
            where = f"epoch {t.best_epoch}, step {t.best_step}"
            print(f"best {t.monitor}: {t.best:.4f} ({where}): {out / BEST}")
        print(f"run directory: {out} (last checkpoint: {out / LAST})", flush=True)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``tapegrad eval``: a checkpoint's test loss and accuracy (or MSE); returns the exit
    status.
    """
    from . import zoo
    from .data import DataLoader, DatasetNotFoundError, TensorDataset
    from .kernels import set_num_threads
    from .train import (
        TrainConfig,
        confusion_matrix,
        evaluate,
        model_kwargs,
        plot_confusion,
        prepare_arrays,
        write_confusion_csv,
    )

    if args.model is not None and args.model not in zoo.MODELS:
        raise UsageError(
            f"tapegrad eval: --model {args.model!r} is not a zoo model; choose from "
            f"{zoo.available()}"
        )
    confusion = _confusion_arg(args.confusion) if args.confusion is not None else None
    path = _checkpoint_arg("eval", "checkpoint", args.checkpoint)
    if args.threads:
        set_num_threads(args.threads)
    state = _load_checkpoint("eval", "checkpoint", path)
    weights = state.get("model", state) if isinstance(state, dict) else state
    saved_cfg = state.get("config", {}) if isinstance(state, dict) else {}
    saved_cfg = saved_cfg if isinstance(saved_cfg, dict) else {}
    if not isinstance(weights, dict):
        raise CLIError(f"tapegrad eval: checkpoint {path}: holds no state dict of a model")
    name = args.model or saved_cfg.get("model")
    if name is None:
        raise UsageError(
            f"tapegrad eval: checkpoint {path} does not say which model it holds; pass --model"
        )
    if name not in zoo.MODELS:
        raise CLIError(f"tapegrad eval: checkpoint {path} holds an unknown model {name!r}")
    data_name = args.data or saved_cfg.get("data") or "fashion-mnist"
    cfg = TrainConfig(model=name, data=data_name, data_dir=args.data_dir)
    cfg.limit_test = args.limit_test
    recon = zoo.task_of(name) == "reconstruction"
    if recon and confusion is not None:
        raise UsageError(
            f"tapegrad eval: --confusion: {name} reconstructs its input; it has no classes"
        )
    try:
        x, y = prepare_arrays(cfg, "test", normalise=not recon)
    except DatasetNotFoundError as e:
        raise CLIError(f"tapegrad eval: {_one_line(e)}") from e
    kwargs = (saved_cfg.get("extra") or {}).get("model_kwargs") or model_kwargs(x)
    model = zoo.get_model(name, **kwargs)
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError, TypeError) as e:
        raise CLIError(
            f"tapegrad eval: checkpoint {path} does not fit {name}: {_one_line(e)}"
        ) from e
    loader = DataLoader(TensorDataset(x, y), args.batch_size)
    if recon:
        loss, _ = evaluate(model, loader, recon)
        print(f"{name} on {data_name} test ({len(y)} images): MSE {loss:.5f}")
        return 0
    try:
        loss, cm = confusion_matrix(model, loader)
    except ValueError as e:
        raise CLIError(f"tapegrad eval: {data_name} test set: {_one_line(e)}") from e
    acc = int(cm.trace()) / max(int(cm.sum()), 1)
    print(
        f"{name} on {data_name} test ({len(y)} images): loss {loss:.4f}, accuracy {100 * acc:.2f}%"
    )
    names = class_names(data_name, cm.shape[0])
    print(_per_class_table(cm, names))
    if confusion is not None:
        csv_path = confusion.with_suffix(".csv")
        try:
            confusion.parent.mkdir(parents=True, exist_ok=True)
            write_confusion_csv(cm, names, csv_path)
            plot_confusion(cm, names, confusion, f"{name} on {data_name} test")
        except OSError as e:
            raise CLIError(
                f"tapegrad eval: --confusion {confusion}: cannot write ({e.strerror or e})"
            ) from e
        print(f"confusion matrix: {confusion} (counts: {csv_path})")
    return 0


def class_names(data_name: str, num_classes: int) -> list[str]:
    """The class names of a dataset (Fashion-MNIST's and CIFAR-10's words, digits for
    MNIST), or the class numbers when the dataset has none or another class count."""
    from .predict import CLASS_NAMES

    names = CLASS_NAMES.get(data_name)
    if names is None or len(names) != num_classes:
        return [str(i) for i in range(num_classes)]
    return list(names)


def _per_class_table(cm: Any, names: list[str]) -> str:
    """Per-class accuracy: class number, name, images, correct, accuracy."""
    from .train import per_class_accuracy

    acc = per_class_accuracy(cm)
    width = max(len("class"), *(len(n) for n in names))
    lines = [f"{'':>3} {'class':<{width}} {'images':>7} {'correct':>8} {'accuracy':>9}"]
    for i, name in enumerate(names):
        a = "-" if acc[i] != acc[i] else f"{100 * acc[i]:.2f}%"  # NaN: no images
        lines.append(f"{i:>3} {name:<{width}} {cm[i].sum():>7} {cm[i, i]:>8} {a:>9}")
    return "\n".join(lines)


_PICTURE_SUFFIXES = (".png", ".svg", ".pdf")


def _confusion_arg(value: str) -> Path:
    """``eval --confusion``'s picture path, checked before any work: a picture suffix,
    not a directory, matplotlib installed."""
    path = Path(value)
    where = f"tapegrad eval: --confusion {value}"
    if path.suffix.lower() not in _PICTURE_SUFFIXES:
        raise UsageError(f"{where}: the picture must end in {', '.join(_PICTURE_SUFFIXES)}")
    if path.is_dir():
        raise UsageError(f"{where}: is a directory")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(
            f"{where}: the picture needs matplotlib, which is not installed: "
            "pip install 'tapegrad[plot]'"
        )
    return path


def cmd_info(args: argparse.Namespace) -> int:
    """``tapegrad info``: a zoo model's layer table (or the model list); returns the exit status."""
    from . import zoo

    if args.list or args.model is None:
        print("\n".join(zoo.available()))
        return 0
    if args.model not in zoo.MODELS:
        raise UsageError(
            f"tapegrad info: unknown model {args.model!r}; choose from {zoo.available()}"
        )
    kwargs: dict[str, Any] = {"num_classes": args.num_classes}
    if args.in_channels is not None:
        kwargs["in_channels"] = args.in_channels
    if args.input_size is not None:
        kwargs["input_size"] = args.input_size
    c = kwargs.get("in_channels", 1)
    side = kwargs.get("input_size", zoo.DEFAULT_INPUT.get(args.model, 28))
    try:
        model = zoo.get_model(args.model, **kwargs)
        table = zoo.summary(model, (c, side, side), name=args.model)
    except (ValueError, TypeError) as e:
        given = " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in kwargs.items() if k != "num_classes"
        )
        raise UsageError(
            f"tapegrad info: {args.model} cannot be built with {given or 'these options'}: "
            f"{_one_line(e)}"
        ) from e
    print(table)
    return 0


def _check_environment() -> None:
    """The environment variables tapegrad reads, checked before any work starts."""
    threads = os.environ.get("TAPEGRAD_NUM_THREADS")
    if threads:
        try:
            ok = int(threads) > 0
        except ValueError:
            ok = False
        if not ok:
            raise UsageError(
                f"tapegrad: TAPEGRAD_NUM_THREADS={threads!r} is not a positive integer"
            )
    kernels = os.environ.get("TAPEGRAD_KERNELS")
    if kernels:
        from .kernels import registry

        try:
            registry._env_choices()
        except (ValueError, RuntimeError) as e:
            raise UsageError(f"tapegrad: TAPEGRAD_KERNELS={kernels!r}: {_one_line(e)}") from None


_DEBUG = False  # set by main(): --debug or TAPEGRAD_DEBUG


def _debug_wanted(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("TAPEGRAD_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``) and return the exit status:
    0 on success, 2 for a usage error (bad argument, option value or environment variable),
    1 for an error while running; each error is one line on stderr (``--debug`` or
    ``TAPEGRAD_DEBUG=1`` adds the traceback).
    """
    global _DEBUG
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _DEBUG = _debug_wanted(argv)
    argv = [a for a in argv if a != "--debug"]
    command = argv[0] if argv and not argv[0].startswith("-") else ""
    try:
        _check_environment()
        if command in _DELEGATED:
            # parsed by the delegate itself so its own --help and options work
            return _run_delegated(command, _DELEGATED[command][0], argv[1:])
        args = build_parser().parse_args(argv)
        handlers = {"train": cmd_train, "eval": cmd_eval, "info": cmd_info}
        return handlers[args.command](args)
    except CLIError as e:
        if debug:
            traceback.print_exc()
        print(_one_line(e), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(
            f"tapegrad {command}: interrupted" if command else "tapegrad: interrupted",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # anything else: one line, the traceback only on request
        if debug:
            traceback.print_exc()
        prefix = f"tapegrad {command}:" if command else "tapegrad:"
        print(f"{prefix} {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
