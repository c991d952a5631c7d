"""Training-step time on an augmenting per-item pipeline, loading in the training process
(``num_workers=0``) and in worker processes (``num_workers=2``), and the share of the step
spent waiting for data.

Fashion-MNIST training images (``tapegrad.data.load_dataset``) go through
``RandomResizedCrop(side, scale=(0.6, 1.0))`` and ``RandomRotation(15)`` item by item
(``tapegrad.utils.data.DataLoader``, default collate, batch 64, shuffled) into a zoo model
trained with SGD and momentum. Per step: the time ``next(batches)`` blocked (the wait for
data) and the time of forward, loss, backward and update. The worker counts alternate from
round to round (the one that starts flips) in one process; each round warms up, then times
``--steps`` steps with ``persistent_workers`` so worker start-up is outside the timing.
Reported per worker count: the median over rounds of the median step time, the spread of
those medians ((max - min) / median), the median wait per step and the wait's share of the
total step time. Run under the benchmark lock and note ``uptime``:

    flock /work/wt/bench.lock python benchmarks/dataloader_workers.py [--model lenet5]
        [--workers 0,2] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import optim, zoo
from tapegrad.data import load_dataset
from tapegrad.data.transforms import Compose, RandomResizedCrop, RandomRotation
from tapegrad.utils.data import DataLoader, Dataset


class Augmented(Dataset):
    """Fashion-MNIST items (1, 28, 28) through a per-item transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def run(loader: DataLoader, net, opt, warmup: int, steps: int) -> tuple[list, list]:
    batches = iter(loader)
    waits, totals = [], []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if k >= warmup:
            waits.append(t1 - t0)
            totals.append(t2 - t0)
    return waits, totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, help="tapegrad's kernel threads (default: its own)")
    args = ap.parse_args()
    if args.threads:
        tg.set_num_threads(args.threads)
    side = zoo.DEFAULT_INPUT[args.model]
    n = args.batch * (args.steps + args.warmup)
    x, y = load_dataset("fashion-mnist", "train", limit=n)
    transform = Compose([RandomResizedCrop(side, scale=(0.6, 1.0)), RandomRotation(15)])
    ds = Augmented(x, y, transform)
    workers = [int(w) for w in args.workers.split(",")]
    tg.manual_seed(0)
    net = zoo.get_model(args.model)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    results: dict[int, dict[str, list[float]]] = {w: {"step": [], "wait": [], "share": []}
                                                  for w in workers}  # fmt: skip
    for r in range(args.rounds):
        for w in workers if r % 2 == 0 else workers[::-1]:
            kw = {"persistent_workers": True} if w else {}
            dl = DataLoader(ds, batch_size=args.batch, shuffle=True, seed=r, num_workers=w, **kw)
            waits, totals = run(dl, net, opt, args.warmup, args.steps)
            del dl
            results[w]["step"].append(statistics.median(totals))
            results[w]["wait"].append(statistics.median(waits))
            results[w]["share"].append(sum(waits) / sum(totals))
    t0 = time.perf_counter()
    for i in range(args.batch * 4):
        ds[i]
    per_item = (time.perf_counter() - t0) / (args.batch * 4)
    print(
        f"{args.model}, batch {args.batch}, Fashion-MNIST items through RandomResizedCrop("
        f"{side}, scale=(0.6, 1.0)) + RandomRotation(15); {args.rounds} alternated rounds of "
        f"{args.steps} timed steps after {args.warmup} warm-up steps; tapegrad threads "
        f"{tg.get_num_threads()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; "
        f"augmenting one item in the training process: {per_item * 1e3:.2f} ms"
    )
    print()
    print("| num_workers | step ms (median) | spread | wait for data ms (median) "
          "| share of step time waiting | images/s |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    base = None
    for w in workers:
        s = results[w]
        step = statistics.median(s["step"])
        spread = (max(s["step"]) - min(s["step"])) / step
        base = base or step
        print(
            f"| {w} | {step * 1e3:.1f} | {spread:.0%} | {statistics.median(s['wait']) * 1e3:.2f} "
            f"| {statistics.median(s['share']):.0%} | {args.batch / step:.0f} |"
        )
    print()
    if 0 in results:
        zero = statistics.median(results[0]["step"])
        for w in workers:
            if w:
                ratio = statistics.median(results[w]["step"]) / zero
                print(f"step time with {w} workers / with 0: {ratio:.2f}")


if __name__ == "__main__":
    main()
