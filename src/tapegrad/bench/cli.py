"""``python -m tapegrad bench``: time kernel variants side by side.

Examples::

    python -m tapegrad bench --quick
    python -m tapegrad bench --ops conv2d,max_pool2d --compare torch --json run.json --plot run.png
    python -m tapegrad bench --shapes zoo:lenet5 --autotune --variants auto,im2col-numba
    python -m tapegrad bench --compare-json old.json new.json
    python -m tapegrad bench --rules-from run.json          # regenerate auto's shape rules
    python -m tapegrad bench --plugin my_variants.py --ops conv2d --variants mine,im2col-cython
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _names(values: list[str] | None) -> list[str] | None:
    """``--ops a,b c`` -> ["a", "b", "c"]."""
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def load_plugin_file(path: str) -> None:
    """Run the Python file ``path`` (it registers variants with
    ``tapegrad.kernels.register``). ValueError names the file when it is missing or fails."""
    import importlib.util
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"bench: --plugin {path}: no such file")
    name = f"tapegrad_plugin_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ValueError(f"bench: --plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ValueError(f"bench: --plugin {path} failed: {type(exc).__name__}: {exc}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add bench's options to ``parser`` (used by ``tapegrad.cli`` and ``tapegrad.bench``)."""
    parser.add_argument(
        "--ops",
        nargs="+",
        metavar="OP",
        help="ops to time (comma or space separated; default: every registered op with cases)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="NAME",
        help="variants to time (default: every available one but reference; "
        "'auto' times the registry's choice)",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="a Python file that registers kernel variants with tapegrad.kernels.register "
        "(repeatable); its variants are checked and timed beside the built-in ones",
    )
    parser.add_argument(
        "--shapes",
        default=None,
        metavar="FILE|PRESET",
        help="'standard' (default), 'quick', 'zoo:NAME' (a zoo model's layers) "
        'or a JSON file: a list of {"op": ..., "N": ..., ...}',
    )
    parser.add_argument(
        "--directions",
        nargs="+",
        metavar="DIR",
        help="forward, backward, both (default: all three)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for tapegrad and torch (default: tapegrad's count)",
    )
    parser.add_argument(
        "--compare",
        choices=["torch"],
        default=None,
        help="also time PyTorch on the same inputs and report the ratio",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per case after warm-up (default 7, --quick 3)",
    )
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write results as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="write the roofline + bars PNG")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small shapes and few repeats: about a minute on 2 cores",
    )
    parser.add_argument(
        "--autotune",
        action="store_true",
        help="time 'auto' with autotune on (its tuning cost shows as JIT s)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="autotune without the disk cache (neither read nor written)",
    )
    parser.add_argument(
        "--clear-cache", action="store_true", help="delete the autotune disk cache and exit"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the agreement check against reference"
    )
    parser.add_argument(
        "--write-rules",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="write auto's shape rules from this run (default: the file tapegrad.kernels reads)",
    )
    parser.add_argument(
        "--rules-from",
        metavar="JSON",
        help="regenerate auto's shape rules from a saved bench JSON and exit",
    )
    parser.add_argument(
        "--compare-json",
        nargs=2,
        metavar=("A.json", "B.json"),
        help="print per-case ratios B/A between two bench JSON files and exit",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _collect_cases(args: argparse.Namespace, ops: list[str]):
    from . import cases as C

    shapes = args.shapes or ("quick" if args.quick else "standard")
    if shapes in ("standard", "quick") or shapes.startswith("zoo:"):
        return C.preset_cases(shapes, ops), shapes
    if os.path.exists(shapes):
        return C.file_cases(shapes, ops), shapes
    raise ValueError(
        f"bench: --shapes {shapes!r} is neither a preset (standard, quick, zoo:NAME) "
        f"nor an existing file"
    )


def main(args: argparse.Namespace) -> int:
    """Run bench with parsed ``args``; returns the process exit code (1 if a variant
    disagreed with reference, 2 for bad arguments). Autotune and disk-cache switches
    set by the options are restored on return."""
    import tapegrad.kernels as K

    saved = (K.autotune_enabled(), K.disk_cache_enabled())
    try:
        return _main(args)
    finally:
        K.autotune(saved[0])
        K.disk_cache(saved[1])


def _main(args: argparse.Namespace) -> int:
    import tapegrad
    import tapegrad.kernels as K

    from . import cases as C
    from . import machine, report, rules, runner

    try:
        if args.clear_cache:
            removed = K.clear_autotune_cache()
            print(f"removed {len(removed)} autotune cache file(s) from {K.cache_dir()}")
            return 0
        if args.compare_json:
            a, b = (report.read_json(p) for p in args.compare_json)
            print(report.compare(a, b))
            return 0
        if args.rules_from:
            path = rules.write_rules(report.read_json(args.rules_from), args.write_rules or None)
            print(f"wrote auto's shape rules to {path}")
            return 0

        for path in args.plugin:
            load_plugin_file(path)
        ops = C.resolve_ops(_names(args.ops))
        wanted = _names(args.variants)
        runner.check_variant_names(ops, wanted)
        directions = tuple(_names(args.directions) or C.DIRECTIONS)
        bad = [d for d in directions if d not in C.DIRECTIONS]
        if bad:
            raise ValueError(f"bench: unknown direction(s) {bad}; valid: {list(C.DIRECTIONS)}")
        if args.repeat is not None and args.repeat < 1:
            raise ValueError(f"bench: --repeat must be at least 1, got {args.repeat}")
        cases, shapes = _collect_cases(args, ops)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not cases:
        print(f"bench: no cases for ops {', '.join(ops)} in {shapes}", file=sys.stderr)
        return 2

    threads, threads_source = thread_count(args.threads)
    tapegrad.set_num_threads(threads)
    if "--threads or" in threads_source:  # fewer threads than cores: say so before timing
        print(f"bench: running at {threads} thread(s) ({threads_source})")
    with_torch = args.compare == "torch"
    if with_torch:
        import importlib.util

        if importlib.util.find_spec("torch") is None:  # PyTorch runs in its own process
            print(
                "error: bench: --compare torch needs PyTorch (pip install tapegrad[torch])",
                file=sys.stderr,
            )
            return 2
    if args.no_cache:
        K.disk_cache(False)
    if args.autotune:
        K.autotune(True)
    autotune = K.autotune_enabled()
    variants = {op: runner.variants_for(op, wanted, args.autotune) for op in ops}
    cases = [c for c in cases if variants[c.op]]

    t0 = time.perf_counter()
    mach = machine.info(threads, quick=args.quick, with_torch=with_torch)
    mach["threads_source"] = threads_source
    repeat = args.repeat or (3 if args.quick else 7)
    opt = runner.Options(
        repeat=repeat,
        directions=directions,
        compare_torch=with_torch,
        check=not args.no_check,
        progress=not args.no_progress,
        copy_at=machine.copy_gbps_at,
    )
    if with_torch:
        from .torch_side import TorchProcess

        with TorchProcess(threads) as proc:
            side = proc.info()
            mach["torch_threads"] = side["threads"]
            mach["torch_blas"] = side["blas"]
            opt.torch_proc = proc
            results = runner.run(cases, variants, mach, opt)
    else:
        results = runner.run(cases, variants, mach, opt)
    elapsed = time.perf_counter() - t0
    print(report.format_table(results, mach))
    print(
        f"{len(cases)} cases, {len(results)} rows in {elapsed:.1f} s (repeat {repeat}, "
        f"shapes {shapes})"
    )

    config = {
        "shapes": shapes,
        "ops": ops,
        "variants": variants,
        "directions": list(directions),
        "repeat": repeat,
        "threads": threads,
        "threads_source": threads_source,
        "quick": args.quick,
        "autotune": autotune,
        "disk_cache": K.disk_cache_enabled(),
        "compare": args.compare,
        "elapsed_s": elapsed,
    }
    if args.json_out:
        report.write_json(args.json_out, results, mach, config)
        print(f"wrote {args.json_out}")
    if args.plot:
        try:
            report.plot(args.plot, results, mach)
            print(f"wrote {args.plot}")
        except ImportError:
            print("bench: matplotlib is not installed (pip install tapegrad[plot]); no plot")
    if args.write_rules is not None:
        doc = {"machine": mach, "results": results}
        path = rules.write_rules(doc, args.write_rules or None)
        print(f"wrote auto's shape rules to {path}")
    wrong = [r for r in results if r.get("agree") is False]
    if wrong:
        names = sorted({f"{r['op']}/{r['variant']}" for r in wrong})
        print(
            f"bench: {len(wrong)} rows disagree with reference: {', '.join(names)}", file=sys.stderr
        )
        return 1
    return 0


def build_parser(prog: str = "python -m tapegrad.bench") -> argparse.ArgumentParser:
    """The ``bench`` argument parser on its own (``python -m tapegrad.bench``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def thread_count(requested: int | None) -> tuple[int, str]:
    """The thread count ``bench`` runs at and where it came from: ``--threads``,
    ``TAPEGRAD_NUM_THREADS``, ``set_num_threads`` earlier in the process, or tapegrad's
    default, which leaves out the cores other processes keep busy when it is decided (on a
    busy machine that is fewer threads than cores, and the table says so)."""
    import os

    from tapegrad.kernels import threads as T

    if requested:
        return int(requested), "--threads"
    if T._state.get("n") is not None:
        return T.get_num_threads(), "set_num_threads"
    if os.environ.get("TAPEGRAD_NUM_THREADS"):
        return T.get_num_threads(), "TAPEGRAD_NUM_THREADS"
    cores = T._cores()
    if T._state.get("default") is None:
        busy = T.busy_cores()
        T._state["default"] = T.default_threads(cores, busy)
        why = f"{busy:.1f} busy"
    else:
        why = "decided at this process's first kernel"
    n = int(T._state["default"])
    note = "" if n >= cores else "; --threads or TAPEGRAD_NUM_THREADS to set it"
    return n, f"default: {cores} cores, {why}{note}"


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run: ``tapegrad.bench.cli.run(["--quick"])``."""
    return main(build_parser().parse_args(argv))


__all__ = ["add_arguments", "build_parser", "main", "run"]
