"""Command line: ``tapegrad {train,eval,info,bench,experiment}`` (also ``python -m tapegrad``).

``bench`` and ``experiment`` live in ``tapegrad.bench.cli`` and ``tapegrad.experiments.cli``
(each exposes ``add_arguments(parser)`` and ``main(args) -> int``); they are imported only
when their subcommand runs, so a missing or broken one cannot break ``train``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

_DELEGATED = {
    "bench": ("tapegrad.bench.cli", "kernel and model benchmarks"),
    "experiment": ("tapegrad.experiments.cli", "reproducible experiments"),
    "export": ("tapegrad.onnx_cli", "write a trained model as an ONNX file"),
    "predict": ("tapegrad.predict", "top-k classes of PNG/JPEG images"),
}


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from .data import DATASETS

    p.add_argument("--data", default="fashion-mnist", choices=DATASETS, help="dataset")
    p.add_argument(
        "--data-dir",
        default=None,
        help="directory holding the dataset files (default: /usr/share/datasets/<name>)",
    )
    p.add_argument("--threads", type=int, default=None, help="threads for kernels and BLAS")
    p.add_argument("--limit-test", type=int, default=None, help="use the first N test images")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .train import DEFAULT_LR, SCHEDULERS

    p.add_argument("model", help="zoo model name (see `tapegrad info --list`)")
    _add_data_args(p)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--batch-size", type=int, default=64, help="batch (with --distributed: global, split)"
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (default per optimizer)")
    p.add_argument("--optimizer", default="sgd", choices=sorted(DEFAULT_LR))
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument(
        "--scheduler", default="onecycle", choices=SCHEDULERS, help="per-batch LR schedule"
    )
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up over N batches")
    p.add_argument("--augment", action="store_true", help="random crop (+ flip on CIFAR-10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory: checkpoints, metrics, curves")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue from a checkpoint")
    p.add_argument("--limit-train", type=int, default=None, help="use the first N images")
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
    parser = argparse.ArgumentParser(
        prog="tapegrad", description="Train and inspect small CNNs with tapegrad."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", help="train a zoo model")
    _add_train_args(p)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a test set")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by `tapegrad train`")
    _add_data_args(p)
    p.add_argument("--model", default=None, help="zoo model (default: from the checkpoint)")
    p.add_argument("--batch-size", type=int, default=500)

    p = sub.add_parser("info", help="layer summary of a zoo model")
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--list", action="store_true", help="list the zoo models")
    p.add_argument("--in-channels", type=int, default=None)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=10)

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
    p = argparse.ArgumentParser(prog=f"tapegrad {command}")
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


def cmd_train(args: argparse.Namespace) -> int:
    """``tapegrad train``: build the run from the arguments and train; returns the exit status."""
    from . import zoo
    from .train import TrainConfig

    if args.model not in zoo.MODELS:
        print(
            f"tapegrad train: unknown model {args.model!r}; choose from {zoo.available()}",
            file=sys.stderr,
        )
        return 2
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
    )
    if not args.distributed:
        return _run_train(args, cfg, {})
    kwargs = _distributed_options(cfg)
    from . import distributed as dist

    # a rank that stops must end the whole job: the others may be waiting for it in a
    # collective they can never leave (MPI_Abort prints this rank's reason and ends all)
    try:
        rc = _run_train(args, cfg, kwargs)
    except Exception as e:
        if not isinstance(e, dist.ConfigMismatchError):  # that one's message says it all
            import traceback

            traceback.print_exc()
        dist.abort(f"tapegrad train: {type(e).__name__}: {e}")
    if rc:
        dist.abort(f"tapegrad train: stopped with exit status {rc}", rc)
    return rc


def _run_train(args: argparse.Namespace, cfg: Any, kwargs: dict[str, Any]) -> int:
    from .data import DatasetNotFoundError
    from .train import Trainer

    try:
        trainer = Trainer(cfg, **kwargs)
    except DatasetNotFoundError as e:
        print(f"tapegrad train: {e}", file=sys.stderr)
        return 1
    if args.resume:
        trainer.resume(args.resume)
        if trainer.is_main:
            print(f"resumed from {args.resume} after epoch {trainer.epoch}", flush=True)
    history = trainer.fit()
    if trainer.is_main and history:
        last = history[-1]
        if last["test_accuracy"] is not None:
            print(f"test accuracy: {100 * last['test_accuracy']:.2f}%")
        else:
            print(f"test MSE: {last['test_loss']:.5f}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``tapegrad eval``: a checkpoint's test loss and accuracy (or MSE); returns the exit
    status.
    """
    from . import checkpoint, zoo
    from .data import DataLoader, DatasetNotFoundError, TensorDataset
    from .kernels import set_num_threads
    from .train import TrainConfig, evaluate, model_kwargs, prepare_arrays

    if args.threads:
        set_num_threads(args.threads)
    state = checkpoint.load(args.checkpoint)
    weights = state.get("model", state) if isinstance(state, dict) else state
    saved_cfg = state.get("config", {}) if isinstance(state, dict) else {}
    name = args.model or saved_cfg.get("model")
    if name is None:
        print(
            f"tapegrad eval: {args.checkpoint} does not say which model it holds; pass --model",
            file=sys.stderr,
        )
        return 2
    cfg = TrainConfig(model=name, data=args.data, data_dir=args.data_dir)
    cfg.limit_test = args.limit_test
    recon = zoo.task_of(name) == "reconstruction"
    try:
        x, y = prepare_arrays(cfg, "test", normalise=not recon)
    except DatasetNotFoundError as e:
        print(f"tapegrad eval: {e}", file=sys.stderr)
        return 1
    kwargs = (saved_cfg.get("extra") or {}).get("model_kwargs") or model_kwargs(x)
    model = zoo.get_model(name, **kwargs)
    model.load_state_dict(weights)
    loss, acc = evaluate(model, DataLoader(TensorDataset(x, y), args.batch_size), recon)
    if acc is None:
        print(f"{name} on {args.data} test ({len(y)} images): MSE {loss:.5f}")
    else:
        print(
            f"{name} on {args.data} test ({len(y)} images): loss {loss:.4f}, "
            f"accuracy {100 * acc:.2f}%"
        )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``tapegrad info``: a zoo model's layer table (or the model list); returns the exit status."""
    from . import zoo

    if args.list or args.model is None:
        print("\n".join(zoo.available()))
        return 0
    if args.model not in zoo.MODELS:
        print(
            f"tapegrad info: unknown model {args.model!r}; choose from {zoo.available()}",
            file=sys.stderr,
        )
        return 2
    kwargs: dict[str, Any] = {"num_classes": args.num_classes}
    if args.in_channels is not None:
        kwargs["in_channels"] = args.in_channels
    if args.input_size is not None:
        kwargs["input_size"] = args.input_size
    model = zoo.get_model(args.model, **kwargs)
    c = kwargs.get("in_channels", 1)
    side = kwargs.get("input_size", zoo.DEFAULT_INPUT.get(args.model, 28))
    print(zoo.summary(model, (c, side, side), name=args.model))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``) and return the exit status:
    0 on success, 1 when the dataset is missing, 2 for an unknown model; malformed options
    exit through argparse with status 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        # parsed by the delegate itself so its own --help and options work
        return _run_delegated(argv[0], _DELEGATED[argv[0]][0], argv[1:])
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "eval": cmd_eval, "info": cmd_info}
    return handlers[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
