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

    def step() -> tuple[float, float]:
        opt.zero_grad()
        t0, c0 = time.perf_counter(), time.process_time()
        F.cross_entropy(model(x), y).backward()
        compute, cpu = time.perf_counter() - t0, time.process_time() - c0
        opt.step()  # Allreduce (hooked), then the SGD update
        return compute, cpu

    dist.barrier()
    t0 = time.perf_counter()
    step()  # compiles the Numba kernels (cached on disk after the first run)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    step_times, ar_times, compute_times, cpu_times = [], [], [], []
    for _ in range(steps):
        dist.barrier()  # start every step together: the step time is the slowest rank's
        t0 = time.perf_counter()
        compute, cpu = step()
        compute_times.append(compute)
        cpu_times.append(cpu)
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
    # CPU seconds of this process: the work itself, whatever share of a core it got
    cpu_med = float(comm.allreduce(statistics.median(cpu_times), op=MPI.MAX))
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
                    "compute_cpu_s": cpu_med,
                    "allreduce_calls_per_step": len(model.buckets),
                    "grad_bytes": sum(b.nbytes() for b in model.buckets),
                    "bare_allreduce_s": bare,
                    "bare_allreduce_min_s": bare_min,
                }
            ),
            flush=True,
        )


def worker_torch(global_batch: int, steps: int, warmup: int) -> None:
    """The same measurement with PyTorch DistributedDataParallel over gloo (mpirun-launched)."""
    import numpy as np
    import torch
    import torch.distributed as tdist
    from torch import nn

    torch.set_num_threads(1)
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    world = int(os.environ["OMPI_COMM_WORLD_SIZE"])
    tdist.init_process_group(
        "gloo", init_method="tcp://127.0.0.1:29517", rank=rank, world_size=world
    )
    per_rank = global_batch // world
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = torch.from_numpy(rng.standard_normal((per_rank, 1, 28, 28)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, per_rank))

    def step() -> None:
        opt.zero_grad()
        # DDP overlaps its bucketed allreduce with backward: no separate allreduce time
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if world > 1:
            tdist.barrier()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = torch.tensor(statistics.median(times), dtype=torch.float64)
    if world > 1:
        tdist.all_reduce(med)
        med /= world
    if rank == 0:
        print(json.dumps({"ranks": world, "step_s": float(med),
                          "images_per_s": global_batch / float(med)}), flush=True)  # fmt: skip
    tdist.destroy_process_group()


def launch(ranks: int, args: argparse.Namespace, torch: bool = False) -> dict:
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
    cmd += args.mpirun_args.split() + (["setsid", "--wait"] if args.setsid else [])
    cmd += [sys.executable]
    cmd += [str(HERE), "--worker", "--global-batch", str(args.global_batch)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--torch-worker"] if torch else []
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


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
    p.add_argument(
        "--setsid",
        action="store_true",
        help="each rank in its own session: with Linux's autogroup scheduling (on by default "
        "on desktops and VMs) all processes of one session share one CPU share, so on a "
        "busy machine two ranks started from one shell get no more CPU than one",
    )
    p.add_argument("--torch", action="store_true", help="also PyTorch DDP (gloo), same run")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        if args.torch_worker:
            worker_torch(args.global_batch, args.steps, args.warmup)
        else:
            worker(args.global_batch, args.steps, args.warmup)
        return
    rows: dict[int, list[dict]] = {}
    trows: dict[int, list[dict]] = {}
    for _ in range(args.repeat):
        for r in args.ranks:
            rows.setdefault(r, []).append(launch(r, args))
            if args.torch:
                trows.setdefault(r, []).append(launch(r, args, torch=True))
    print(f"lenet5, global batch {args.global_batch}, 1 thread per rank, {os.cpu_count()} cores")
    print(
        f"{'ranks':>5} {'images/s':>9} {'step ms':>8} {'fwd+bwd ms (CPU)':>17} "
        f"{'allreduce in step ms':>21} {'bare 241 KB med/min ms':>23} {'first step s':>13}"
    )
    base = None
    chosen = {}
    for r, runs in rows.items():
        run = chosen[r] = sorted(runs, key=lambda d: d["images_per_s"])[len(runs) // 2]
        base = base or run["images_per_s"]
        fb = f"{run['compute_s'] * 1e3:.1f} ({run['compute_cpu_s'] * 1e3:.1f})"
        bare = f"{run['bare_allreduce_s']['61706'] * 1e3:.3f}/"
        bare += f"{run['bare_allreduce_min_s']['61706'] * 1e3:.3f}"
        print(
            f"{r:>5} {run['images_per_s']:>9.0f} {run['step_s'] * 1e3:>8.1f} "
            f"{fb:>17} {run['allreduce_in_step_s'] * 1e3:>21.2f} "
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
    if trows:
        print("PyTorch DistributedDataParallel (gloo), same settings:")
        for r, runs in trows.items():
            run = sorted(runs, key=lambda d: d["images_per_s"])[len(runs) // 2]
            ours = chosen[r]["images_per_s"]
            print(
                f"{r:>5} {run['images_per_s']:>9.0f} {run['step_s'] * 1e3:>8.1f} ms"
                f"   tapegrad/torch images/s: {ours / run['images_per_s']:.2f}"
            )
    print(json.dumps({"tapegrad": rows, "torch": trows}))


if __name__ == "__main__":
    main()
