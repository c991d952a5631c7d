"""The tape's sum of a tensor's two gradients (resnet8's block inputs: a conv's input
gradient plus the shortcut's): into a fresh array through the add kernels
(``tapegrad.autograd._sum``) against in place into the gradient a backward marked fresh
(``_sum_into``), per resnet8 gradient shape, alternated call by call; median ms of
``--repeats`` calls.

    python benchmarks/grad_sum_in_place.py [--threads 1] [--repeats 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SHAPES = [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=40)
    a = ap.parse_args()

    import tapegrad as tg
    from tapegrad.autograd import _sum, _sum_into

    tg.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    print("| gradient | threads | fresh sum ms | in place ms |")
    print("| --- | ---: | ---: | ---: |")
    for shape in SHAPES:
        x = rng.standard_normal(shape, dtype=np.float32)
        y = rng.standard_normal(shape, dtype=np.float32)
        fns = {
            "fresh": lambda x=x, y=y: _sum(x, y),
            "in place": lambda x=x, y=y: _sum_into(x, True, y, False),
        }
        ts: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(a.repeats + 2):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                ts[k].append(1e3 * (time.perf_counter() - t0))
        med = {k: float(np.median(v[2:])) for k, v in ts.items()}
        name = "x".join(map(str, shape))
        print(f"| {name} | {a.threads} | {med['fresh']:.2f} | {med['in place']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
