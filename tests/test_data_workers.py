"""tapegrad.utils.data.DataLoader with worker processes: same batches whatever num_workers
is, errors raised again in the calling process, and no worker left behind."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from tapegrad.data.transforms import sample_generator
from tapegrad.utils.data import DataLoader, Dataset, TensorDataset, get_worker_info


class Noisy(Dataset):
    """Item i: i plus noise from the item's generator, and the worker's pid."""

    def __init__(self, n=10, fail_at=None, exit_at=None, sleep=0.0):
        self.n, self.fail_at, self.exit_at, self.sleep = n, fail_at, exit_at, sleep

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise ValueError(f"bad item {i}")
        if i == self.exit_at:
            os._exit(3)
        if self.sleep:
            time.sleep(self.sleep)
        x = np.full(2, i, np.float32) + sample_generator().random(2).astype(np.float32)
        info = get_worker_info()
        return x, i, (-1 if info is None else os.getpid())


def _alive(pids):
    alive = []
    for pid in set(pids) - {-1}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # a zombie is gone too (exited, not yet reaped)
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] != "Z":
                alive.append(pid)
    return alive


def _epochs(num_workers, epochs=2, **kw):
    dl = DataLoader(Noisy(), batch_size=3, shuffle=True, seed=5, num_workers=num_workers, **kw)
    out, pids = [], []
    for _ in range(epochs):
        batches = list(dl)
        out.append(np.concatenate([b[0].numpy() for b in batches]))
        pids += [int(p) for b in batches for p in b[2].numpy()]
    return out, pids


def test_same_batches_whatever_num_workers():
    ref, pids0 = _epochs(0)
    assert set(pids0) == {-1}
    assert not np.allclose(ref[0], ref[1])  # a new order and new augmentation each epoch
    two, pids = _epochs(2, prefetch_factor=1)
    for a, b in zip(ref, two):
        np.testing.assert_array_equal(a, b)
    assert len(set(pids)) == 4 and os.getpid() not in pids  # 2 workers per epoch
    assert not _alive(pids)  # the workers stop at the end of each epoch


def test_persistent_workers_are_reused_and_stopped_with_the_loader():
    ref, _ = _epochs(0)
    dl = DataLoader(
        Noisy(), batch_size=3, shuffle=True, seed=5, num_workers=2, persistent_workers=True
    )
    runs = [list(dl) for _ in range(2)]
    pids = [{int(p) for b in r for p in b[2].numpy()} for r in runs]
    assert pids[0] == pids[1] and len(pids[0]) == 2
    for r, a in zip(runs, ref):
        np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in r]), a)
    assert _alive(pids[0])
    first = iter(dl)
    second = iter(dl)  # takes the workers over
    with pytest.raises(RuntimeError, match="a newer iteration of this loader started"):
        next(first)
    replay = DataLoader(Noisy(), batch_size=3, shuffle=True, seed=5)
    replay.set_epoch(3)  # epochs 0 and 1 above, 2 for `first`
    np.testing.assert_array_equal(
        np.concatenate([b[0].numpy() for b in second]),
        np.concatenate([b[0].numpy() for b in replay]),
    )
    del dl, first, second
    assert not _alive(pids[0])


def test_tensor_dataset_batches_in_workers():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    ds = TensorDataset(x, np.arange(20))
    a = [b[0].numpy() for b in DataLoader(ds, batch_size=6, shuffle=True, seed=1)]
    b = [b[0].numpy() for b in DataLoader(ds, batch_size=6, shuffle=True, seed=1, num_workers=2)]
    assert len(a) == len(b) == 4
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_error_in_worker_names_the_index_and_stops_workers():
    dl = DataLoader(Noisy(fail_at=7), batch_size=2, num_workers=2)
    it = iter(dl)
    first = next(it)
    pids = [int(p) for p in first[2].numpy()] + [p.pid for p in it.pool.procs]
    with pytest.raises(
        ValueError,
        match=r"(?s)worker \d: dataset\[7\] raised ValueError: bad "
        r"item 7.*Traceback in the worker",
    ):
        list(it)
    assert not _alive(pids)


def test_in_process_error_notes_the_index():
    with pytest.raises(ValueError, match="bad item 4") as e:
        list(DataLoader(Noisy(fail_at=4), batch_size=2))
    assert "dataset[4]" in "".join(getattr(e.value, "__notes__", ["dataset[4]"]))


def test_dead_worker_and_timeout_are_errors_not_hangs():
    with pytest.raises(
        RuntimeError,
        match=r"worker \d \(pid \d+\) exited unexpectedly with "
        "exit code 3",
    ):
        list(DataLoader(Noisy(exit_at=2), batch_size=2, num_workers=2))
    dl = DataLoader(Noisy(n=2, sleep=0.5), batch_size=1, num_workers=1, timeout=0.1)
    it = iter(dl)
    pids = [p.pid for p in it.pool.procs]
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"no batch from the workers within timeout=0.1 s"):
        next(it)
    assert time.monotonic() - start < 3
    assert not _alive(pids)


def test_early_break_and_ctrl_c_stop_the_workers():
    it = iter(DataLoader(Noisy(n=40), batch_size=2, num_workers=2))
    next(it)
    pids = [p.pid for p in it.pool.procs]
    del it
    assert not _alive(pids)

    # 8 items of 1 s on 2 workers: the loader is still waiting when Ctrl-C comes at 0.1 s,
    # even when a busy machine starts the timer thread late
    it = iter(DataLoader(Noisy(n=8, sleep=1.0), batch_size=1, num_workers=2))
    pids = [p.pid for p in it.pool.procs]
    received = threading.Event()

    def on_sigint(signum, frame):
        received.set()
        signal.default_int_handler(signum, frame)

    # Python's own Ctrl-C handler for the test: a process started in the background by a
    # shell without job control inherits SIGINT ignored, and Python then installs none
    previous = signal.signal(signal.SIGINT, on_sigint)
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            list(it)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert received.is_set()
    assert not _alive(pids)


def test_worker_init_fn_and_unpicklable_batch():
    def init(worker_id):
        raise OSError(f"init {worker_id} failed")

    with pytest.raises(OSError, match=r"worker \d: worker_init_fn raised OSError: init \d failed"):
        list(DataLoader(Noisy(), batch_size=2, num_workers=1, worker_init_fn=init))
    with pytest.raises(TypeError, match=r"the batch of dataset indices \[0, 1\] raised TypeE"):
        list(
            DataLoader(
                Noisy(), batch_size=2, num_workers=1, collate_fn=lambda items: threading.Lock()
            )
        )


def test_worker_argument_errors():
    with pytest.raises(ValueError, match="DataLoader: num_workers must be an int >= 0, got -1"):
        DataLoader(Noisy(), num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor and persistent_workers need"):
        DataLoader(Noisy(), prefetch_factor=2)
    with pytest.raises(ValueError, match="prefetch_factor must be a positive int, got 0"):
        DataLoader(Noisy(), num_workers=1, prefetch_factor=0)
    with pytest.raises(ValueError, match="DataLoader: timeout must be >= 0"):
        DataLoader(Noisy(), timeout=-1)
    assert len(list(DataLoader(Noisy(), batch_size=4, shuffle=True, seed=-3))) == 3


def test_spawned_workers_give_the_same_batches():
    ref, _ = _epochs(0, epochs=1)
    got, pids = _epochs(1, epochs=1, multiprocessing_context="spawn")
    np.testing.assert_array_equal(ref[0], got[0])
    assert not _alive(pids)
