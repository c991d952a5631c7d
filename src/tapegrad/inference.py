"""Inference: models rebuilt from checkpoints for deployment.

``load_model(path)`` rebuilds the zoo model a ``tapegrad train`` run saved (a run
directory or one of its ``.safetensors`` checkpoints) with its weights, in eval mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import checkpoint, zoo

__all__ = ["load_model"]


def load_model(path: str | os.PathLike, model: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The zoo model saved in a run directory or checkpoint, with its weights, in eval mode.

    Parameters
    ----------
    path : str or PathLike
        A run directory of ``tapegrad train`` (its ``last.safetensors`` is read) or a
        checkpoint file holding ``model`` weights and ``config``.
    model : str, optional
        The zoo model's name when the checkpoint does not say (a bare state dict).

    Returns
    -------
    (Module, dict)
        The model and ``info``: ``name``, ``in_channels``, ``input_size``, ``num_classes``,
        ``data`` (the dataset it was trained on, or None) and ``checkpoint`` (the file read).

    Raises
    ------
    FileNotFoundError
        No such file, or a run directory without ``last.safetensors``.
    ValueError
        The checkpoint names no model (and ``model`` is not given), names an unknown one,
        or holds weights of other shapes. ``tapegrad.checkpoint.CheckpointError`` (a
        ValueError) for a damaged file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "last.safetensors"
        if not p.exists():
            raise FileNotFoundError(f"load_model: run directory {path} has no last.safetensors")
    state = checkpoint.load(p)
    if not isinstance(state, dict):
        raise ValueError(f"load_model: {p} holds no state dict")
    weights = state.get("model", state)
    cfg = state.get("config") or {}
    name = model or cfg.get("model")
    if name is None:
        raise ValueError(f"load_model: {p} does not say which zoo model it holds; pass model=")
    if name not in zoo.MODELS:
        raise ValueError(f"load_model: unknown model {name!r}; choose from {zoo.available()}")
    kwargs = dict((cfg.get("extra") or {}).get("model_kwargs") or {})
    head = [k for k in weights if k.endswith(".weight")]
    if "num_classes" not in kwargs and zoo.task_of(name) == "classification" and head:
        kwargs["num_classes"] = int(weights[head[-1]].shape[0])
    if "in_channels" not in kwargs:
        first = next(k for k in weights if k.endswith(".weight"))
        kwargs["in_channels"] = int(weights[first].shape[1])
    net = zoo.get_model(name, **kwargs)
    try:
        net.load_state_dict(weights)
    except (KeyError, ValueError) as e:
        raise ValueError(f"load_model: {p} does not fit {name} built with {kwargs}: {e}") from None
    net.eval()
    info = {
        "name": name,
        "in_channels": kwargs["in_channels"],
        "input_size": kwargs.get("input_size", zoo.DEFAULT_INPUT.get(name, 28)),
        "num_classes": kwargs.get("num_classes", 10),
        "data": cfg.get("data"),
        "checkpoint": str(p),
    }
    return net, info
