"""``tapegrad export RUN_DIR_OR_CHECKPOINT --onnx model.onnx``: a trained zoo model as ONNX."""

from __future__ import annotations

import argparse
import sys

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``tapegrad export``."""
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--onnx", required=True, metavar="PATH", help="the ONNX file to write")
    p.add_argument("--model", default=None, help="zoo model (default: from the checkpoint)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17-21)")
    p.add_argument(
        "--static-batch", action="store_true", help="fix the batch size at 1 (default: dynamic)"
    )
    p.add_argument(
        "--fold",
        action="store_true",
        help="fold batch norm into the conv/linear layer before it (the optimized graph)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``tapegrad export``; returns the exit status (errors go to stderr, no traceback)."""
    from . import onnx as tg_onnx
    from .checkpoint import CheckpointError
    from .inference import load_model

    try:
        model, info = load_model(args.checkpoint, args.model)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        print(f"tapegrad export: {e}", file=sys.stderr)
        return 1
    side = int(info["input_size"])
    x = np.zeros((1, info["in_channels"], side, side), np.float32)
    try:
        tg_onnx.export(
            model,
            x,
            args.onnx,
            opset_version=args.opset,
            dynamic_batch=not args.static_batch,
            fold=args.fold,
        )
    except ImportError as e:
        print(f"tapegrad export: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"tapegrad export: {e}", file=sys.stderr)
        return 1
    batch = "1" if args.static_batch else "batch"
    print(
        f"wrote {args.onnx}: {info['name']}, input {batch}x{info['in_channels']}x{side}x{side} "
        f"float32, opset {args.opset}"
    )
    return 0
