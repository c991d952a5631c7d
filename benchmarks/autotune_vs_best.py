"""Autotuned ``auto`` against the best single variant, on the zoo presets.

For every layer of every zoo model (``bench --shapes zoo:NAME``: the kernel calls one
forward pass makes, batch 64), with autotune on and its cache empty (a temporary
directory, so the tuning really runs; its cost is the ``tune s`` column, never in the
medians):

1. scan: every single variant and ``auto``, ``--scan`` samples each, round-robin;
2. final: ``auto`` against the contenders (every single variant within 15% of the fastest
   in the scan, and the one ``auto`` resolved to), ``--repeat`` samples each, round-robin
   with a rotating start. A sample is the median of a burst of back-to-back calls lasting
   about ``--sample-ms``, which keeps sub-millisecond kernels out of timer and scheduler
   noise.

``ratio`` is the median over rounds of ``auto``'s sample over the best contender's sample
of the same round: load that drifts over the run cancels. ``pick`` is the variant ``auto``
resolved to over the best one, both timed as single variants: above 1 is a wrong choice,
where ``ratio`` alone cannot tell a wrong choice from dispatch cost. The claim checked:
``ratio`` <= 1.05 for every case in both directions (autotune times the forward, and the
backward too for calls recorded for one, as in training). Exit status 1 otherwise, or if
any variant disagrees with ``reference``.

    python benchmarks/autotune_vs_best.py                  # all zoo models, 2 threads
    python benchmarks/autotune_vs_best.py --models lenet5 --repeat 9 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

DIRS = ("forward", "both")
SHORT = {"forward": "fwd", "both": "f+b"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", help="zoo models (default: all)")
    ap.add_argument("--batch", type=int, default=64, help="batch size of the presets")
    ap.add_argument("--scan", type=int, default=5, help="samples per variant in the scan")
    ap.add_argument("--repeat", type=int, default=21, help="samples per contender, final")
    ap.add_argument("--sample-ms", type=float, default=5.0, help="burst length of a sample")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=1.05)
    ap.add_argument("--json", help="write the per-case rows as JSON")
    args = ap.parse_args(argv)

    # an empty autotune cache: the winners are timed in this run, not read from disk
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="tapegrad-autotune-")
    import tapegrad as tg
    import tapegrad.kernels as K
    from tapegrad import zoo
    from tapegrad.bench import cases as C
    from tapegrad.bench import machine, runner

    tg.set_num_threads(args.threads)
    K.autotune(True)
    ops = C.registered_ops()
    mach = machine.info(args.threads, quick=True)
    print(
        f"{mach['cpu']}, {args.threads} threads, batch {args.batch}, repeat {args.repeat}; "
        f"autotune cache {K.cache_dir()}"
    )
    # phase 1 finds the contenders: every single variant, few samples
    scan = runner.Options(repeat=args.scan, directions=DIRS, progress=False)
    rows_out = []
    worst = dict.fromkeys(DIRS, 0.0)
    header = (
        f"{'model':16} {'op':16} {'case':34} {'dir':5} {'best variant':14} "
        f"{'best ms':>8} {'auto ->':14} {'auto ms':>8} {'ratio':>6} {'pick':>6} {'tune s':>7}"
    )
    print(header)
    print("-" * len(header))
    t0 = time.perf_counter()
    for model in args.models or zoo.available():
        for case in C.zoo_cases(model, ops, batch=args.batch):
            singles = [v for v in K.variants(case.op) if v != "reference"]
            if not singles:
                continue
            first = runner.run_case(case, [*singles, "auto"], mach, scan)
            tune_s = next(r["first_s"] for r in first if r["variant"] == "auto")
            # autotune keeps inference (forward) and training (forward + backward) winners
            # apart: auto's pick per direction
            chosen_by = {
                r["direction"]: r["chosen"]
                for r in first
                if r["variant"] == "auto" and r.get("direction") in DIRS
            }
            agree = all(r.get("agree") is not False for r in first)
            # phase 2: auto against every single within 15% of the fastest in phase 1 (and
            # against the one auto resolved to), many paired samples
            contenders = {chosen_by[d] for d in DIRS if d in chosen_by}
            fastest = {}
            for d in DIRS:
                by = {r["variant"]: r["median_s"] for r in first if r.get("direction") == d}
                fastest[d] = min(by[v] for v in singles if v in by)
                contenders |= {v for v in singles if by.get(v, 1e9) <= 1.15 * fastest[d]}
            per_call = max(fastest["forward"], 1e-6)
            burst = max(1, min(64, round(args.sample_ms * 1e-3 / per_call)))
            final = runner.Options(repeat=args.repeat, directions=DIRS, progress=False, burst=burst)
            rows = runner.run_case(case, [*sorted(contenders), "auto"], mach, final)
            for d in DIRS:
                by = {r["variant"]: r for r in rows if r.get("direction") == d}
                best = min((v for v in contenders if v in by), key=lambda v: by[v]["median_s"])
                auto = by["auto"]
                # paired: auto and best ran in the same rounds, so the median of the
                # per-round ratios cancels load that drifts over the run
                pairs = zip(auto["samples_s"], by[best]["samples_s"])
                ratio = statistics.median(a / b for a, b in pairs)
                # the variant auto resolved to, timed as itself: a wrong pick, not dispatch
                chosen = chosen_by[d]
                pick = by[chosen]["median_s"] / by[best]["median_s"]
                worst[d] = max(worst[d], ratio)
                flag = "" if ratio <= args.tolerance else "  <-- over"
                print(
                    f"{model:16} {case.op:16} {case.label:34} {SHORT[d]:5} {best:14} "
                    f"{1e3 * by[best]['median_s']:8.3f} {chosen:14} "
                    f"{1e3 * auto['median_s']:8.3f} {ratio:6.3f} {pick:6.3f} {tune_s:7.2f}{flag}"
                )
                rows_out.append(
                    {
                        "model": model,
                        "op": case.op,
                        "case": case.label,
                        "direction": d,
                        "best": best,
                        "best_s": by[best]["median_s"],
                        "auto_choice": chosen,
                        "auto_s": auto["median_s"],
                        "ratio": ratio,
                        "pick_ratio": pick,
                        "burst": burst,
                        "tune_s": tune_s,
                        "scan_s": {
                            r["variant"]: r["median_s"] for r in first if r.get("direction") == d
                        },
                        "samples_s": {v: r["samples_s"] for v, r in by.items()},
                        "agree": agree and all(r.get("agree") is not False for r in by.values()),
                    }
                )
            sys.stdout.flush()
    elapsed = time.perf_counter() - t0
    ok = all(w <= args.tolerance for w in worst.values())
    wrong = [r for r in rows_out if not r["agree"]]
    print(
        f"\n{len(rows_out) // len(DIRS)} cases in {elapsed:.0f} s; worst auto/best (paired "
        f"median): forward {worst['forward']:.3f}, forward+backward {worst['both']:.3f} -> "
        f"{'PASS' if ok else 'FAIL'} (tolerance {args.tolerance})"
        + (f"; {len(wrong)} rows DISAGREE with reference" if wrong else "")
    )
    if args.json:
        with open(args.json, "w") as f:
            doc = {"machine": mach, "args": vars(args), "rows": rows_out, "worst": worst}
            json.dump(doc, f, indent=1)
    return 0 if ok and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
