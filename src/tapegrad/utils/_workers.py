"""Worker processes of :class:`tapegrad.utils.data.DataLoader`.

Each worker has its own task queue; all send results to one queue. A task is
``(generation, task id, epoch, indices)``; a result is ``(generation, task id, payload,
error)`` with the batch pickled in the worker, so a batch that cannot be pickled is an error
reported to the loader rather than lost in the queue's feeder thread. The loader keeps
``prefetch_factor`` tasks per worker in flight, hands them out round-robin and yields the
results in task order. Every wait in the loader is bounded and checks that the workers are
alive; every wait in a worker checks that the loader's process is alive.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.transforms import sample_generator_scope

_POLL = 0.05  # seconds between liveness checks while waiting on a queue
_JOIN = 2.0  # seconds a worker gets to exit before it is terminated


@dataclass(frozen=True)
class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker process.

    Attributes
    ----------
    id : int
        This worker's number, ``0 <= id < num_workers``.
    num_workers : int
    seed : int
        The loader's seed (items' generators come from ``(seed, epoch, index)``).
    dataset : object
        This worker's copy of the dataset.
    """

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """The :class:`WorkerInfo` of the current DataLoader worker process, or None in the
    calling process."""
    return _worker_info


def fetch_batch(
    dataset: Any, indices: np.ndarray, collate: Callable, whole: bool, seed: int, epoch: int
) -> Any:
    """Fetch items ``indices`` of ``dataset`` and collate them; each ``dataset[i]`` runs with
    its generator from ``(seed, epoch, i)`` as :func:`sample_generator`. ``whole``: the
    dataset takes the whole index array at once (an in-memory TensorDataset)."""
    if whole:
        return dataset[indices]
    items = []
    for i in indices:
        i = int(i)
        try:
            with sample_generator_scope(np.random.default_rng((seed, epoch, i))):
                items.append(dataset[i])
        except Exception as e:
            e._tapegrad_index = i  # type: ignore[attr-defined]
            if hasattr(e, "add_note"):
                e.add_note(f"DataLoader: raised while loading dataset[{i}]")
            raise
    return collate(items)


class _WorkerError:
    """An exception raised in a worker, carried to the loader as text."""

    def __init__(self, worker_id: int, where: str, exc: BaseException) -> None:
        self.exc_type = type(exc)
        self.message = (
            f"DataLoader worker {worker_id}: {where} raised "
            f"{type(exc).__name__}: {exc}\n\nTraceback in the worker:\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        )

    def __reduce__(self) -> tuple:
        # the exception type may not be importable in the loader: fall back to its name
        try:
            pickle.dumps(self.exc_type)
            kind: Any = self.exc_type
        except Exception:
            kind = RuntimeError
        return (_rebuild_error, (kind, self.message))

    def reraise(self) -> None:
        """Raise the worker's exception type with the worker's message (RuntimeError when
        that type cannot be built from one string)."""
        try:
            err = self.exc_type(self.message)
        except Exception:
            err = None
        if not isinstance(err, BaseException) or err.args != (self.message,):
            err = RuntimeError(self.message)
        raise err


def _rebuild_error(kind: type, message: str) -> _WorkerError:
    w = _WorkerError.__new__(_WorkerError)
    w.exc_type, w.message = kind, message
    return w


def _worker_loop(
    worker_id: int,
    num_workers: int,
    dataset: Any,
    collate: Callable,
    whole: bool,
    seed: int,
    worker_init_fn: Callable[[int], None] | None,
    tasks: Any,
    results: Any,
    parent_pid: int,
) -> None:
    global _worker_info
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the loader's to handle
    results.cancel_join_thread()  # exiting never waits on a loader that stopped reading
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    init_error = None
    if worker_init_fn is not None:
        try:
            worker_init_fn(worker_id)
        except Exception as e:
            init_error = _WorkerError(worker_id, "worker_init_fn", e)
    while True:
        try:
            task = tasks.get(timeout=_POLL * 4)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return  # the loader's process is gone
            continue
        if task is None:
            return
        gen, tid, epoch, indices = task
        payload, error = None, init_error
        if error is None:
            try:
                batch = fetch_batch(dataset, indices, collate, whole, seed, epoch)
                payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                index = getattr(e, "_tapegrad_index", None)
                where = (
                    f"dataset[{index}]"
                    if index is not None
                    else f"the batch of dataset indices {list(map(int, indices))}"
                )
                error = _WorkerError(worker_id, where, e)
        results.put((gen, tid, payload, error))


def _default_context() -> Any:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _stop(procs: list, task_queues: list, results: Any) -> None:
    for q in task_queues:
        try:
            q.put(None)
        except Exception:
            pass
    deadline = time.monotonic() + _JOIN
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=_JOIN)
        if p.is_alive():
            p.kill()
            p.join(timeout=_JOIN)
    for q in [*task_queues, results]:
        q.cancel_join_thread()
        q.close()


class WorkerPool:
    """``num_workers`` processes loading batches of one dataset (see the module text)."""

    def __init__(
        self,
        dataset: Any,
        collate: Callable,
        whole: bool,
        seed: int,
        num_workers: int,
        worker_init_fn: Callable[[int], None] | None,
        context: Any = None,
    ) -> None:
        ctx = (
            _default_context()
            if context is None
            else mp.get_context(context)
            if isinstance(context, str)
            else context
        )
        self.num_workers = num_workers
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(num_workers)]
        self.procs = []
        self.generation = 0
        self.closed = False
        # stops the workers when the pool is dropped, and at interpreter exit
        self._finalizer = weakref.finalize(self, _stop, self.procs, self.tasks, self.results)
        try:
            for w in range(num_workers):
                p = ctx.Process(
                    target=_worker_loop,
                    args=(
                        w,
                        num_workers,
                        dataset,
                        collate,
                        whole,
                        seed,
                        worker_init_fn,
                        self.tasks[w],
                        self.results,
                        os.getpid(),
                    ),
                    daemon=True,
                    name=f"tapegrad-dataloader-{w}",
                )
                p.start()
                self.procs.append(p)
        except BaseException:
            self.shutdown()
            raise

    def usable(self) -> bool:
        """True while every worker is alive and the pool was not shut down."""
        return not self.closed and all(p.is_alive() for p in self.procs)

    def shutdown(self) -> None:
        """Stop the workers (join, then terminate any that do not exit) and close the
        queues."""
        self.closed = True
        self._finalizer()

    def run(
        self,
        epoch: int,
        batches: list[np.ndarray],
        prefetch: int,
        timeout: float,
        close_at_end: bool,
    ) -> Iterator[Any]:
        """An iterator over the collated batches of ``batches`` (index arrays), in order."""
        self.generation += 1
        return _PoolIterator(self, self.generation, epoch, batches, prefetch, timeout, close_at_end)


class _PoolIterator:
    def __init__(
        self,
        pool: WorkerPool,
        gen: int,
        epoch: int,
        batches: list[np.ndarray],
        prefetch: int,
        timeout: float,
        close_at_end: bool,
    ) -> None:
        self.pool, self.gen, self.epoch, self.batches = pool, gen, epoch, batches
        self.timeout, self.close_at_end = timeout, close_at_end
        self.sent = self.received = 0
        self.buffer: dict[int, tuple[Any, Any]] = {}
        self.done = False
        for _ in range(min(len(batches), prefetch * pool.num_workers)):
            self._send()

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> _PoolIterator:
        return self

    def _send(self) -> None:
        if self.sent < len(self.batches):
            tid = self.sent
            self.pool.tasks[tid % self.pool.num_workers].put(
                (self.gen, tid, self.epoch, self.batches[tid])
            )
            self.sent += 1

    def _finish(self) -> None:
        self.done = True
        self.buffer.clear()
        if self.close_at_end:
            self.pool.shutdown()

    def _wait(self) -> tuple[Any, Any]:
        start = time.monotonic()
        pool = self.pool
        while self.received not in self.buffer:
            try:
                gen, tid, payload, error = pool.results.get(timeout=_POLL)
            except queue.Empty:
                for w, p in enumerate(pool.procs):
                    if not p.is_alive():
                        raise RuntimeError(
                            f"DataLoader worker {w} (pid {p.pid}) exited unexpectedly with "
                            f"exit code {p.exitcode}"
                        ) from None
                if self.timeout and time.monotonic() - start > self.timeout:
                    raise RuntimeError(
                        f"DataLoader: no batch from the workers within timeout={self.timeout} s"
                    ) from None
                continue
            if gen == self.gen:
                self.buffer[tid] = (payload, error)
        return self.buffer.pop(self.received)

    def __next__(self) -> Any:
        if self.done or self.pool.closed and self.received < len(self.batches):
            if not self.done:
                raise RuntimeError("DataLoader: the worker processes were shut down")
            raise StopIteration
        if self.received == len(self.batches):
            self._finish()
            raise StopIteration
        if self.pool.generation != self.gen:
            self.done = True  # the workers now serve the newer iteration: leave them be
            raise RuntimeError(
                "DataLoader: a newer iteration of this loader started; persistent workers "
                "serve one iteration at a time"
            )
        try:
            payload, error = self._wait()
            self.received += 1
            if error is not None:
                error.reraise()
            self._send()
            return pickle.loads(payload)
        except BaseException:
            # an error in a worker, a dead worker, a timeout or Ctrl-C: stop every worker
            self.done = True
            self.pool.shutdown()
            raise

    def __del__(self) -> None:
        if not self.done and self.close_at_end:
            self.pool.shutdown()
