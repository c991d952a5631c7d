"""The deep-learning homework tapegrad grew out of, as runnable experiments.

Each experiment re-runs one problem of the course homework on convolutions, batch norm
and dropout with tapegrad, prints the numbers the solutions give, and draws them::

    python -m tapegrad experiment --list
    python -m tapegrad experiment filter-recovery
    python -m tapegrad experiment dropout-regression --plot dropout.png

From Python, ``run(name)`` returns the experiment's result object (its fields are the
numbers printed), ``report(name, result)`` the text and ``plot(name, result, path)``
the picture. One module per experiment; :data:`EXPERIMENTS` is the registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["EXPERIMENTS", "Experiment", "get", "names", "plot", "report", "run"]


@dataclass(frozen=True)
class Experiment:
    """A registry entry: the CLI name, the homework problem, what it shows, its module.

    The module defines ``run(seed=0, **options) -> result``, ``report(result) -> str``
    and ``plot(result, path) -> None``.
    """

    name: str
    problem: str
    summary: str
    module: str

    def load(self) -> ModuleType:
        """Import and return the experiment's module (it defines ``run``, ``report`` and
        ``plot``).
        """
        return importlib.import_module(f"{__name__}.{self.module}")


_ENTRIES = [
    Experiment(
        "filter-recovery",
        "1(b)",
        "the conv filter [2, -1, 3] found from [1, 4, 0, -2, 3] -> [-2, 2, 11], by solving "
        "the linear system and by training a Conv1d",
        "filter_recovery",
    ),
    Experiment(
        "transpose-conv",
        "1(c)",
        "a 2x2 input transpose-convolved with a 2x2 filter: the 3x3 result as a sum of "
        "shifted, scaled filters",
        "transpose_conv",
    ),
    Experiment(
        "bn-gradient",
        "2(b)",
        "mean-only batch norm's gradient: 0 for a batch of 1, tends to gamma * dL/dy_i as "
        "the batch grows",
        "bn_gradient",
    ),
    Experiment(
        "separable-params",
        "3",
        "3x3 conv 3->4 channels: 108 weights vs 39 for depthwise separable (112 vs 43 with "
        "biases), and the FLOPs of both on a 224x224 image",
        "separable_params",
    ),
    Experiment(
        "dropout-tikhonov",
        "4, 8",
        "expected dropout loss = ||y - pXw||^2 + p(1-p)||Gamma w||^2 (Monte Carlo and exact), "
        "w = p * w_dropout solves the Tikhonov problem; Gaussian noise gives (A)=mu, "
        "(B)=sigma^2",
        "dropout_tikhonov",
    ),
    Experiment(
        "dropout-regression",
        "5(a)-(h)",
        "x = [10, 1], y = 11: OLS [1.0891, 0.1089]; dropout [0.3667, 3.6667]; spiky vs "
        "smooth loss; the dropout-rate sweep's jump at 0; SGD vs Adam",
        "dropout_regression",
    ),
    Experiment(
        "dropout-cheating",
        "5(i)",
        "Fashion-MNIST with a feature that gives away the label in training only: test "
        "accuracy and reliance on it, with and without dropout",
        "dropout_cheating",
    ),
    Experiment(
        "bn-distribution",
        "9",
        "a Gaussian (mean 1.5, var 0.16) through batch norm with gamma 1, beta 3; a 2-D "
        "Gaussian's 1- and 2-sigma contours before and after",
        "bn_distribution",
    ),
    Experiment(
        "dropout-overfit",
        "6(c)",
        "a small CNN on Fashion-MNIST with and without dropout: train/validation accuracy "
        "curves and the gap between them",
        "dropout_overfit",
    ),
    Experiment(
        "bn-graph",
        "6(a)",
        "the computational graph of training-time batch norm from the recorded tape: "
        "X -> mu, sigma^2, Z; mu, sigma^2 -> Z; Z, gamma, beta -> Y",
        "bn_graph",
    ),
]

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in _ENTRIES}


def names() -> list[str]:
    """The experiment names, in homework order."""
    return list(EXPERIMENTS)


def get(name: str) -> Experiment:
    """The registry entry for ``name`` (ValueError listing the valid names otherwise)."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(
            f"experiments.get: unknown experiment {name!r}; choose one of {', '.join(names())}"
        ) from None


def run(name: str, seed: int = 0, **options: Any) -> Any:
    """Run experiment ``name`` and return its result object."""
    return get(name).load().run(seed=seed, **options)


def report(name: str, result: Any) -> str:
    """The text the CLI prints for ``result``."""
    return get(name).load().report(result)


def plot(name: str, result: Any, path: str | Path) -> Path:
    """Draw ``result`` to ``path`` (PNG, SVG or PDF by suffix); needs matplotlib."""
    path = Path(path)
    get(name).load().plot(result, path)
    return path
