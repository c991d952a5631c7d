"""PyTorch's side of ``bench --compare torch``, in a process of its own.

PyTorch runs at its own defaults in a separate process (only the thread count is set to
tapegrad's): nothing tapegrad sets up (thread pools, allocator) reaches it, and nothing
PyTorch loads (its OpenMP runtime) reaches tapegrad. The parent sends one JSON request
per line and reads one JSON answer per line; the timed runs still alternate with
tapegrad's variants round by round, so both see the same machine load.

Requests: ``{"cmd": "info"}``; ``{"cmd": "setup", "case": {...}, "seed": 0, "dtype":
"float32", "gy_shape": [...]}`` (the same inputs as the parent's, drawn from the same
seed); ``{"cmd": "timings", "direction": "both", "repeat": 1, "warm": false}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


class TorchProcess:
    """A running PyTorch worker: :meth:`setup` a case, then :meth:`timings` per sample."""

    def __init__(self, threads: int) -> None:
        cmd = [sys.executable, "-m", "tapegrad.bench.torch_side", str(threads)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ)
        )

    def _ask(self, **msg: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench: the PyTorch process exited ({self.proc.wait()})")
        ans = json.loads(line)
        if "error" in ans:
            raise RuntimeError(f"bench: PyTorch side: {ans['error']}")
        return ans["result"]

    def info(self) -> dict[str, Any]:
        """PyTorch's version, thread count and the BLAS libraries loaded in its process."""
        return self._ask(cmd="info")

    def setup(self, case: Any, seed: int, dtype: Any, gy_shape: tuple[int, ...]) -> None:
        """Build ``case``'s inputs (same seed as the parent) and PyTorch's harness."""
        import numpy as np

        self._ask(
            cmd="setup",
            case=case.to_json(),
            seed=seed,
            dtype=np.dtype(dtype).name,
            gy_shape=list(gy_shape),
        )

    def timings(self, direction: str, repeat: int, warm: bool = True) -> list[float]:
        """``repeat`` timed calls of the current case in ``direction`` (seconds)."""
        return self._ask(cmd="timings", direction=direction, repeat=repeat, warm=warm)

    def close(self) -> None:
        """Stop the worker."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> TorchProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(threads: int) -> None:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    from .cases import Case
    from .runner import _Harness

    torch.set_num_threads(threads)
    harness = None
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "info":
                blas = [
                    {k: d.get(k) for k in ("internal_api", "architecture", "num_threads")}
                    for d in threadpool_info()
                    if d.get("user_api") == "blas"
                ]
                result: Any = {
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "blas": blas,
                }
            elif msg["cmd"] == "setup":
                params = dict(msg["case"])
                case = Case.make(params.pop("op"), **params)
                rng = np.random.default_rng(msg["seed"])
                dtype = np.dtype(msg["dtype"])
                arrays, grad_names = case.spec.build(case.p, rng, dtype)
                gy = rng.standard_normal(tuple(msg["gy_shape"])).astype(dtype)
                harness = _Harness(case, arrays, grad_names, gy, torch_mode=True)
                result = None
            elif msg["cmd"] == "timings":
                assert harness is not None, "timings before setup"
                result = harness.timings(msg["direction"], msg["repeat"], msg["warm"])
            else:
                raise ValueError(f"unknown request {msg['cmd']!r}")
            ans = {"result": result}
        except Exception as exc:  # report to the parent, keep serving
            ans = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
