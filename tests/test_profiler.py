"""tapegrad.profiler: per-op forward/backward times, variants and Python time of a block."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn as nn
import tapegrad.nn.functional as F
from tapegrad import autograd
from tapegrad.profiler import profile


def _net():
    tg.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))


def test_profile_times_each_op_forward_and_backward_with_its_variant():
    net = _net()
    x = tg.randn(2, 1, 4, 4)
    with K.use(conv2d="im2col-numba"), profile() as prof:
        loss = F.cross_entropy(net(x), np.array([0, 2]))
        loss.backward()
    names = [r.name for r in prof.ops]
    assert names[0] == "Conv2dReLU"  # Sequential runs Conv2d + ReLU as one fused op
    conv = prof.ops[0]
    assert conv.variant == "conv2d:im2col-numba,bias_relu:fused-numba"
    assert conv.shape == (2, 4, 4, 4)
    assert conv.forward_s > 0 and conv.backward_s > 0
    assert 0 < prof.kernel_s <= prof.wall_s
    assert prof.python_s >= 0
    table = prof.table()
    assert "Python between kernels" in table and "im2col-numba" in table
    assert len(prof.table(top=1).splitlines()) < len(table.splitlines())


def test_profile_restores_autograd_and_refuses_nesting():
    apply = autograd.Function.apply
    with profile():
        with pytest.raises(RuntimeError, match="already running"):
            with profile():
                pass
    assert autograd._profile_hook[0] is None
    assert autograd.Function.apply == apply
    net = _net()  # ops run after the block are not recorded anywhere
    F.relu(net[0](tg.randn(1, 1, 4, 4)))


def test_profile_command_prints_the_table():
    out = subprocess.run(
        [sys.executable, "-m", "tapegrad", "profile", "lenet5", "--batch", "4", "--warmup", "1"]
        + ["--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Conv2d" in out.stdout and "Python between kernels" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tapegrad", "profile", "nonet"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown model" in bad.stderr


@pytest.mark.torch
def test_profile_compare_torch_adds_pytorch_s_view():
    pytest.importorskip("torch")
    out = subprocess.run(
        [sys.executable, "-m", "tapegrad", "profile", "lenet5", "--batch", "4", "--warmup", "1"]
        + ["--threads", "1", "--compare", "torch"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "PyTorch step under its profiler" in out.stdout
    assert "aten::" in out.stdout


def _recorded(times):
    prof = tg.profiler.Profile(wall_s=sum(f + b for f, b in times) + 1e-3)
    for i, (f, b) in enumerate(times):
        prof.ops.append(tg.profiler.OpRecord(i, f"Op{i}", (2, 3), "v", f, apply_s=f, backward_s=b))
    return prof


def test_median_profile_takes_each_op_s_median_and_refuses_different_blocks():
    from tapegrad.profiler import median_profile

    runs = [_recorded([(1.0, 2.0), (5.0, 1.0)]), _recorded([(3.0, 9.0), (4.0, 1.0)])]
    runs.append(_recorded([(2.0, 4.0), (100.0, 1.0)]))  # one slow outlier on op 1
    med = median_profile(runs)
    assert [r.forward_s for r in med.ops] == [2.0, 5.0]
    assert [r.backward_s for r in med.ops] == [4.0, 1.0]
    assert med.wall_s == pytest.approx(sorted(p.wall_s for p in runs)[1])
    assert med.steps == 3 and "median of 3 profiled steps" in med.table()
    assert "median of" not in runs[0].table()
    with pytest.raises(ValueError, match="median_profile: profiles is empty"):
        median_profile([])
    with pytest.raises(ValueError, match="differ at op 1"):
        median_profile([runs[0], _recorded([(1.0, 2.0)])])


def test_profile_command_steps_prints_medians_and_rejects_zero():
    out = subprocess.run(
        [sys.executable, "-m", "tapegrad", "profile", "lenet5", "--batch", "4", "--warmup", "1"]
        + ["--threads", "1", "--steps", "3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "median of 3 training steps" in out.stdout
    assert "median of 3 profiled steps" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tapegrad", "profile", "lenet5", "--steps", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--steps" in bad.stderr
