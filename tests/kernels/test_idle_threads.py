"""After a layer's forward and backward at two threads, nothing tapegrad started keeps a core
busy: OpenBLAS's workers, once woken by a product on more than one thread, spin for tens of
milliseconds on the cores the next kernel's OpenMP team needs, so tapegrad runs small
products on one BLAS thread (``kernels/blas.py``, ``cblas.single_threaded``). Each case goes
through the op (``auto``'s pick) and the tape, as in training."""

from __future__ import annotations

import time

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F

IDLE_S = 0.05
BUSY_MS = 10.0  # CPU ms a process may spend while idle for IDLE_S (a spinner takes ~IDLE_S)

CASES = {  # name: (function, x shape, weight shape, keyword arguments)
    "conv2d 3x3 8x8 64->64": (F.conv2d, (4, 64, 8, 8), (64, 64, 3, 3), {"padding": 1}),
    "conv2d 3x3 16x16 32->64": (F.conv2d, (4, 32, 16, 16), (64, 32, 3, 3), {"padding": 1}),
    "conv2d 3x3 32x32 16->16": (F.conv2d, (4, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}),
    "conv2d 3x3 40x40 128->128 batch 1": (
        F.conv2d, (1, 128, 40, 40), (128, 128, 3, 3), {"padding": 1},
    ),
    "conv2d 5x5 stride 2": (F.conv2d, (4, 32, 28, 28), (48, 32, 5, 5), {"stride": 2, "padding": 2}),
    "conv2d 1x1": (F.conv2d, (4, 64, 16, 16), (128, 64, 1, 1), {}),
    "depthwise 3x3": (F.conv2d, (4, 128, 16, 16), (128, 1, 3, 3), {"padding": 1, "groups": 128}),
    "conv_transpose2d 4x4 stride 2": (
        F.conv_transpose2d, (4, 64, 8, 8), (64, 32, 4, 4), {"stride": 2, "padding": 1},
    ),
    "linear 512->256": (F.linear, (64, 512), (256, 512), {}),
}  # fmt: skip


def _idle_cpu_ms() -> float:
    c0 = time.process_time()
    time.sleep(IDLE_S)
    return 1e3 * (time.process_time() - c0)


@pytest.mark.parametrize("name", list(CASES))
def test_no_thread_left_spinning(name):
    fn, xs, ws, kw = CASES[name]
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal(xs, dtype=np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal(ws, dtype=np.float32), requires_grad=True)
    before = tg.get_num_threads()
    tg.set_num_threads(2)
    try:
        for _ in range(2):  # the first call compiles, tunes and allocates
            y = fn(x, w, **kw)
            assert _idle_cpu_ms() < BUSY_MS, "forward"
            y.backward(np.ones(y.shape, dtype=np.float32))
            assert _idle_cpu_ms() < BUSY_MS, "backward"
    finally:
        tg.set_num_threads(before)
