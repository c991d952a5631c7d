"""Data-parallel throughput over MPI: lenet5 training images/s on 1 and 2 ranks.

    python benchmarks/bench_distributed.py [--global-batch 128] [--steps 15] [--ranks 1 2]

The script launches itself under ``mpirun -n R`` for each R (one kernel thread per rank,
``--bind-to none --oversubscribe`` so it also runs as root on a small machine) and prints:

- images/s: global batch / median step time (forward, backward, gradient Allreduce, SGD
  step), the global batch split evenly across ranks (strong scaling, as ``--distributed``
  training does);
- allreduce in step: median time inside ``DataParallel.sync_gradients``'s Allreduce, which
  includes waiting for the slowest rank to arrive;
- allreduce alone: median of a bare Allreduce of lenet5's gradient buffer (61,706 float32,
  241 KB) after a barrier, and of larger buffers, to derive the latency/bandwidth model
  used in the README's scaling estimate.

Medians after warm-up steps (the first step's Numba compilation is reported separately).
Ranks yield while waiting in MPI (``tapegrad.distributed`` sets Open MPI's
``mpi_yield_when_idle`` unless ``OMPI_MCA_mpi_yield_when_idle`` is already set): on a busy
machine busy-polling ranks make the Allreduce tens of milliseconds; compare with
``OMPI_MCA_mpi_yield_when_idle=0 python benchmarks/bench_distributed.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def worker(global_batch: int, steps: int, warmup: int) -> None:
    import numpy as np

    import tapegrad as tg
    from tapegrad import distributed as dist
    from tapegrad import optim, zoo
    from tapegrad.nn import functional as F

    rank, world = dist.init(num_threads=1)
    if global_batch % world:
        raise ValueError(f"global batch {global_batch} does not split over {world} ranks")
    per_rank = global_batch // world
    tg.manual_seed(0)
    model = dist.DataParallel(zoo.lenet5())
    opt = model.hook_optimizer(optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    rng = np.random.default_rng(rank)
    x = tg.tensor(rng.standard_normal((per_rank, 1, 28, 28)).astype(np.float32))
    y = tg.tensor(rng.integers(0, 10, per_rank))

    def step() -> float:
        opt.zero_grad()
        t0 = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        compute = time.perf_counter() - t0
        opt.step()  # Allreduce (hooked), then the SGD update
        return compute

    dist.barrier()
    t0 = time.perf_counter()
    step()  # compiles the Numba kernels (cached on disk after the first run)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    step_times, ar_times, compute_times = [], [], []
    for _ in range(steps):
        dist.barrier()  # start every step together: the step time is the slowest rank's
        t0 = time.perf_counter()
        compute_times.append(step())
        step_times.append(time.perf_counter() - t0)
        ar_times.append(model.last_allreduce_seconds)

    # the bare collective, without compute skew: barrier, then Allreduce
    from mpi4py import MPI

    comm = model.comm
    bare: dict[int, float] = {}
    bare_min: dict[int, float] = {}
    for n in (61706, 2**18, 2**20, 2**22):
        buf = np.ones(n, dtype=np.float32)
        ts = []
        for _ in range(30 if n <= 2**20 else 8):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            ts.append(time.perf_counter() - t0)
        bare[n] = float(comm.allreduce(statistics.median(ts), op=MPI.MAX))
        # the fastest repetition: the cost when no other process holds a core
        bare_min[n] = float(comm.allreduce(min(ts), op=MPI.MAX))

    step_med = dist.all_reduce_mean(statistics.median(step_times))
    ar_med = dist.all_reduce_mean(statistics.median(ar_times))
    compute_med = float(comm.allreduce(statistics.median(compute_times), op=MPI.MAX))
    if dist.is_main_process():
        print(
            json.dumps(
                {
                    "ranks": world,
                    "threads_per_rank": tg.get_num_threads(),
                    "global_batch": global_batch,
                    "first_step_s": first,
                    "step_s": step_med,
                    "images_per_s": global_batch / step_med,
                    "allreduce_in_step_s": ar_med,
                    "compute_s": compute_med,
                    "allreduce_calls_per_step": len(model.buckets),
                    "grad_bytes": sum(b.nbytes() for b in model.buckets),
                    "bare_allreduce_s": bare,
                    "bare_allreduce_min_s": bare_min,
                }
            ),
            flush=True,
        )


def launch(ranks: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env.update(
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        TAPEGRAD_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--bind-to", "none"]
    cmd += args.mpirun_args.split() + [sys.executable]
    cmd += [str(HERE), "--worker", "--global-batch", str(args.global_batch)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--global-batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=1, help="runs per rank count (median)")
    p.add_argument(
        "--mpirun-args",
        default="",
        help="extra mpirun options, e.g. '--mca mpi_yield_when_idle 1' on a busy machine",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.global_batch, args.steps, args.warmup)
        return
    rows = {}
    for _ in range(args.repeat):
        for r in args.ranks:
            rows.setdefault(r, []).append(launch(r, args))
    print(f"lenet5, global batch {args.global_batch}, 1 thread per rank, {os.cpu_count()} cores")
    print(
        f"{'ranks':>5} {'images/s':>9} {'step ms':>8} {'fwd+bwd ms':>11} "
        f"{'allreduce in step ms':>21} {'bare 241 KB med/min ms':>23} {'first step s':>13}"
    )
    base = None
    chosen = {}
    for r, runs in rows.items():
        run = chosen[r] = sorted(runs, key=lambda d: d["images_per_s"])[len(runs) // 2]
        base = base or run["images_per_s"]
        bare = f"{run['bare_allreduce_s']['61706'] * 1e3:.3f}/"
        bare += f"{run['bare_allreduce_min_s']['61706'] * 1e3:.3f}"
        print(
            f"{r:>5} {run['images_per_s']:>9.0f} {run['step_s'] * 1e3:>8.1f} "
            f"{run['compute_s'] * 1e3:>11.1f} {run['allreduce_in_step_s'] * 1e3:>21.2f} "
            f"{bare:>23} {run['first_step_s']:>13.2f}   x{run['images_per_s'] / base:.2f}"
        )
    last = chosen[max(chosen)]
    if last["ranks"] > 1:
        print(f"bare Allreduce on {last['ranks']} ranks, float32 (median / fastest of repeats):")
        for n, t in last["bare_allreduce_s"].items():
            tmin = last["bare_allreduce_min_s"][n]
            mb = int(n) * 4 / 2**20
            print(
                f"  {mb:6.2f} MB: {t * 1e3:8.3f} / {tmin * 1e3:7.3f} ms"
                f"  ({int(n) * 4 / tmin / 1e9:5.2f} GB/s at the fastest)"
            )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
