"""The ``experiment`` command: ``tapegrad experiment NAME [--plot OUT.png] [--seed N]
[--threads N]``.

``add_arguments(parser)`` adds the command's arguments to a parser (the main CLI passes
its ``experiment`` sub-parser); ``main(args)`` runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import EXPERIMENTS, get, names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``NAME``, ``--plot``, ``--seed`` and ``--list`` to ``parser``."""
    listing = "\n".join(f"  {e.name:<19} ({e.problem}) {e.summary}" for e in EXPERIMENTS.values())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "experiments:\n" + listing
    parser.add_argument(
        "name", nargs="?", metavar="NAME", help="experiment to run (see the list below)"
    )
    parser.add_argument(
        "--plot", metavar="OUT.png", default=None, help="also draw the results to this file"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0: the numbers in the tests)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for kernels and BLAS (default: $TAPEGRAD_NUM_THREADS or all cores)",
    )
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")


def main(args: argparse.Namespace) -> int:
    """Run the experiment ``args.name``; print its results; draw them to ``args.plot``."""
    if getattr(args, "list", False) or args.name is None:
        for e in EXPERIMENTS.values():
            print(f"{e.name:<19} ({e.problem}) {e.summary}")
        return 0 if getattr(args, "list", False) else 2
    try:
        exp = get(args.name)
    except ValueError:
        print(
            f"tapegrad experiment: unknown experiment {args.name!r}; "
            f"choose one of: {', '.join(names())}",
            file=sys.stderr,
        )
        return 2
    from ..kernels import get_num_threads, set_num_threads

    # set every pool (BLAS, OpenMP, Numba) now, so TAPEGRAD_NUM_THREADS or --threads
    # also holds for BLAS calls made before the first kernel runs
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        print(f"tapegrad experiment: --threads must be >= 1, got {threads}", file=sys.stderr)
        return 2
    set_num_threads(threads or get_num_threads())
    mod = exp.load()
    start = time.perf_counter()
    result = mod.run(seed=args.seed)
    print(f"== {exp.name} (homework problem {exp.problem}) ==")
    print(mod.report(result))
    if args.plot:
        try:
            mod.plot(result, args.plot)
        except ImportError as exc:
            print(f"tapegrad experiment: --plot needs {exc}", file=sys.stderr)
            return 1
        print(f"plot written to {args.plot}")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0
