"""Thread policy: tapegrad's pools stay its own whichever library starts OpenMP first, no
process-wide variable is left changed, and the default thread count follows the load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tapegrad.kernels import threads


def _run(code: str, **env: str) -> list[str]:
    full = {**os.environ, **env}
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_THREADING_LAYER"):
        if k not in env:
            full.pop(k, None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def test_default_threads_leaves_out_the_cores_others_keep_busy():
    assert threads.default_threads(2, 0.0) == 2
    assert threads.default_threads(2, 0.4) == 2
    assert threads.default_threads(2, 1.0) == 1
    assert threads.default_threads(2, 12.0) == 1
    assert threads.default_threads(16, 4.2) == 12
    assert threads.default_threads(1, 0.0) == 1


def test_busy_cores_is_a_core_count():
    busy = threads.busy_cores(0.01)
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 1e-9


def test_busy_cores_counts_time_the_hypervisor_took(monkeypatch):
    """Steal time (the 8th value of /proc/stat's cpu line: the hypervisor ran another
    machine on this one's cores) is busy time: a thread of a parallel region that is not
    running holds the others up just as a busy neighbour process does."""
    import io

    lines = iter(["cpu  500 0 100 1000 0 0 0 0 0 0\n", "cpu  500 0 100 1003 0 0 0 3 0 0\n"])
    monkeypatch.setattr(threads, "open", lambda path: io.StringIO(next(lines)), raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    assert threads.busy_cores() == pytest.approx(1.0)  # half of 2 cores' ticks were stolen


def test_env_thread_count_wins_over_the_load_default():
    code = "import tapegrad as tg; print(tg.get_num_threads())"
    assert _run(code, TAPEGRAD_NUM_THREADS="3") == ["3"]


def test_env_thread_count_change_takes_effect_at_the_next_call(monkeypatch):
    """Without ``set_num_threads``, the count follows ``TAPEGRAD_NUM_THREADS`` as it is set
    and changed in this process."""
    monkeypatch.setitem(threads._state, "n", None)
    monkeypatch.setenv("TAPEGRAD_NUM_THREADS", "3")
    assert threads.get_num_threads() == 3
    monkeypatch.setenv("TAPEGRAD_NUM_THREADS", "1")
    assert threads.get_num_threads() == 1
    monkeypatch.setitem(threads._state, "default", 2)
    monkeypatch.delenv("TAPEGRAD_NUM_THREADS")
    assert threads.get_num_threads() == 2


KERNELS = (
    "import numpy as np, tapegrad as tg, tapegrad.nn.functional as F, tapegrad.kernels as K\n"
    "tg.set_num_threads(2)\n"
    "x = tg.randn(2, 3, 8, 8)\n"
    "with K.use(conv2d='im2col-cython', relu='fused-cython'):\n"
    "    F.relu(F.conv2d(x, tg.randn(4, 3, 3, 3)))\n"
    "with K.use(conv2d='im2col-numba', relu='fused-numba'):\n"
    "    F.relu(F.conv2d(x, tg.randn(4, 3, 3, 3)))\n"
)


def test_no_process_wide_setting_is_left_changed_and_the_user_s_are_kept():
    """After Cython and Numba kernels at two threads: no ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` is left set and Numba's threading layer is Numba's default; a user's
    own ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` and ``NUMBA_THREADING_LAYER`` are left as they
    were set."""
    code = KERNELS + (
        "import os, numba\n"
        "print(os.environ.get('OMP_WAIT_POLICY', '-'), os.environ.get('GOMP_SPINCOUNT', '-'),"
        " numba.config.THREADING_LAYER)"
    )
    assert _run(code) == ["-", "-", "default"]
    assert _run(code, OMP_WAIT_POLICY="ACTIVE", NUMBA_THREADING_LAYER="omp") == [
        "ACTIVE", "-", "omp",
    ]  # fmt: skip
    assert _run(code, GOMP_SPINCOUNT="1000") == ["-", "1000", "default"]


def test_numba_kernels_called_from_several_threads_at_once_complete():
    # a layer that is not threadsafe (workqueue) aborts the process here
    code = (
        "import threading, tapegrad as tg, tapegrad.nn.functional as F, tapegrad.kernels as K\n"
        "tg.set_num_threads(2)\n"
        "x, w = tg.randn(4, 4, 16, 16), tg.randn(8, 4, 3, 3)\n"
        "def run():\n"
        "    with K.use(conv2d='direct-numba', relu='fused-numba'):\n"
        "        for _ in range(10):\n"
        "            F.relu(F.conv2d(x, w, padding=1))\n"
        "run()\n"
        "ts = [threading.Thread(target=run) for _ in range(4)]\n"
        "[t.start() for t in ts]\n"
        "[t.join() for t in ts]\n"
        "print('done')\n"
    )
    assert _run(code) == ["done"]


@pytest.mark.skipif(not threads.OMP_LIB.exists(), reason="built against the system libgomp")
def test_cython_kernels_run_on_tapegrad_s_own_openmp_runtime():
    code = KERNELS + (
        "from tapegrad.kernels.parallel import get_omp_threads\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(get_omp_threads(), 'libtg-omp.so' in maps)"
    )
    assert _run(code) == ["2", "True"]


@pytest.mark.skipif(not threads.OMP_LIB.exists(), reason="built against the system libgomp")
def test_every_cython_extension_links_tapegrad_s_own_openmp_runtime():
    """An extension that links libgomp.so.1 instead (a binary built before the private
    runtime, which build_ext used to keep) binds to PyTorch's libgomp when PyTorch is
    imported first: ``set_num_threads`` then sets PyTorch's team, never the kernels'."""
    from importlib.machinery import EXTENSION_SUFFIXES

    root = threads.OMP_LIB.parent.parent
    built = [p for p in root.rglob(f"*{EXTENSION_SUFFIXES[0]}") if p.parent.name != "_omp"]
    assert built
    other = [str(p.relative_to(root)) for p in built if b"libtg-omp.so" not in p.read_bytes()]
    assert not other, f"linked to another OpenMP runtime (rebuild the extensions): {other}"


@pytest.mark.torch
@pytest.mark.skipif(not threads.OMP_LIB.exists(), reason="built against the system libgomp")
def test_torch_first_keeps_both_thread_teams_apart():
    # PyTorch loads its own libgomp globally; before, tapegrad's Cython kernels bound to it
    # (one team, PyTorch's spin policy, one thread count for both frameworks).
    # torch.get_num_threads() sets PyTorch's count again on its runtime, so it runs first.
    code = (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "torch.ones(64, 64) @ torch.ones(64, 64)\n"
        + KERNELS
        + "from tapegrad.kernels.parallel import get_omp_threads\n"
        "t = torch.get_num_threads()\n"
        "torch.set_num_threads(1)\n"
        "torch.ones(64, 64) @ torch.ones(64, 64)\n"
        "print(t, torch.get_num_threads(), get_omp_threads())"
    )
    assert _run(code) == ["1", "1", "2"]


@pytest.mark.torch
@pytest.mark.skipif(not threads.OMP_LIB.exists(), reason="built against the system libgomp")
def test_torch_first_no_tapegrad_extension_binds_to_torch_s_openmp(tmp_path):
    """With PyTorch imported first, every Cython extension a training step of each zoo
    model loads binds its OpenMP symbols to tapegrad's runtime (the dynamic linker's own
    record, LD_DEBUG=bindings). A plain import of a kernel module, as the conv2d rule once
    made of winograd-cython's to ask what it supports, bound it and the conv modules it
    imports to PyTorch's libgomp."""
    code = (
        "import torch\n"
        "torch.ones(8, 8) @ torch.ones(8, 8)\n"
        "import tapegrad as tg\n"
        "from tapegrad.bench.steps import tapegrad_step\n"
        "tg.set_num_threads(2)\n"
        "for m in ('lenet5', 'vgg_small', 'mobilenet_small', 'resnet8', 'conv_autoencoder'):\n"
        "    tapegrad_step(m, 4)()\n"
        "print('done')\n"
    )
    log = tmp_path / "bindings"
    assert _run(code, LD_DEBUG="bindings", LD_DEBUG_OUTPUT=str(log)) == ["done"]
    root = str(threads.OMP_LIB.parent.parent)
    lines = [ln for f in tmp_path.glob("bindings*") for ln in f.read_text().splitlines()]
    ours = [ln for ln in lines if "binding file " + root in ln and "GOMP_parallel" in ln]
    assert ours, "no tapegrad extension started an OpenMP region"
    wrong = sorted(
        {
            ln.split("binding file ")[1].split()[0]
            for ln in lines
            if "binding file " + root in ln and "/torch/" in ln.split(" to ")[-1]
        }
    )
    assert not wrong, f"bound to PyTorch's OpenMP runtime: {wrong}"


def test_one_team_order_puts_each_cython_variant_before_its_numba_twin():
    from tapegrad.kernels.registry import one_team_order

    assert one_team_order(["fused-numba", "fused-cython"]) == ["fused-cython", "fused-numba"]
    assert one_team_order(["direct-numba", "im2col-cython", "direct-cython", "reference"]) == [
        "direct-cython",
        "direct-numba",
        "im2col-cython",
        "reference",
    ]
    # no twin: the Numba variant keeps its place; a Cython-first order is left alone
    assert one_team_order(["philox-numba", "reference"]) == ["philox-numba", "reference"]
    assert one_team_order(["im2col-cython", "im2col-numba"]) == ["im2col-cython", "im2col-numba"]


def test_auto_step_at_two_threads_uses_one_thread_team(monkeypatch):
    """A LeNet-5 training step under ``auto`` at 2 threads resolves no Numba variant (its
    kernels run on tapegrad's own OpenMP team only); at 1 thread the families' own order
    stands (the Numba epilogue)."""
    import numpy as np

    import tapegrad as tg
    import tapegrad.kernels as K
    import tapegrad.nn.functional as F
    from tapegrad import zoo
    from tapegrad.kernels import registry as R

    if "fused-cython" not in K.variants("bias_relu"):  # a build without Cython kernels
        pytest.skip("no Cython kernels in this build")
    monkeypatch.delenv("TAPEGRAD_KERNELS", raising=False)
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(2)
        net = zoo.get_model("lenet5")
        x = tg.Tensor(np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32))
        with K.record() as calls:
            F.cross_entropy(net(x), np.array([1, 2])).backward()
        ops = {op for op, _ in calls}
        assert {"conv2d", "bias_relu", "max_pool2d"} <= ops
        picked = {(op, R.resolved_name(op, sig, training=True)) for op, sig in calls}
        assert not [p for p in picked if p[1].endswith("-numba")], picked
        tg.set_num_threads(1)
        bias_relu = [sig for op, sig in calls if op == "bias_relu"][0]
        assert R.resolved_name("bias_relu", bias_relu, training=True) == "fused-numba"
    finally:
        tg.set_num_threads(before)
