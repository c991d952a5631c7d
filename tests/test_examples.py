"""The examples/ scripts run, each in its quick mode, and print what they promise."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tapegrad.kernels._numba_cache import cache_root as numba_cache_root

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(
    cmd: list[str], cwd: Path, timeout: float = 300, **extra_env: str
) -> subprocess.CompletedProcess:
    # a fresh cache folder, but this session's compiled kernels (no recompiling per script)
    env = dict(
        os.environ,
        XDG_CACHE_HOME=str(cwd / "cache"),
        TAPEGRAD_NUMBA_CACHE_DIR=str(numba_cache_root()),
        **extra_env,
    )
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a hang is killed with everything it started
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} hung for {timeout}s\n{out}\n{err}")
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{out}\n{err}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_every_example_is_tested():
    tested = {
        "custom_cnn_fashion_mnist.py",
        "custom_function_gradcheck.py",
        "custom_variant.py",
        "mnist.py",
        "mpi_training.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_custom_function_gradcheck(tmp_path):
    out = _run(
        [sys.executable, str(EXAMPLES / "custom_function_gradcheck.py"), "--quick"], tmp_path
    )
    assert "Swish: gradcheck passed" in out.stdout
    assert "WrongSwish: gradcheck caught it" in out.stdout


def test_custom_variant_is_checked_and_benchmarked(tmp_path):
    out = _run([sys.executable, str(EXAMPLES / "custom_variant.py"), "--quick"], tmp_path)
    assert "'maximum-numpy'" in out.stdout
    assert "maximum-numpy agrees with reference: True" in out.stdout
    # the bench table has the new variant beside the built-ins, each checked against reference
    for variant in ("maximum-numpy", "fused-numba"):
        assert re.search(rf"{variant}\s+forward\s.*\sok$", out.stdout, re.M), out.stdout
    assert "WRONG" not in out.stdout


def test_custom_cnn_trains_checkpoints_and_resumes(tmp_path):
    out = _run(
        [
            sys.executable,
            str(EXAMPLES / "custom_cnn_fashion_mnist.py"),
            "--quick",
            "--out",
            str(tmp_path / "run"),
        ],
        tmp_path,
    )
    assert "resumed from" in out.stdout
    assert "test accuracy:" in out.stdout
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "epoch1.safetensors",
        "epoch2.safetensors",
    ]


@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="Open MPI's mpirun not installed")
def test_mpi_training_on_two_ranks(tmp_path):
    cmd = ["mpirun", "-n", "2", "--oversubscribe", "--bind-to", "none", sys.executable]
    cmd += [str(EXAMPLES / "mpi_training.py"), "--quick", "--out", str(tmp_path / "run")]
    out = _run(
        cmd,
        tmp_path,
        TAPEGRAD_NUM_THREADS="1",  # one kernel thread per rank on 2 cores
        OMPI_ALLOW_RUN_AS_ROOT="1",  # CI runs as root; Open MPI refuses unless told
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        OMPI_MCA_mpi_yield_when_idle="1",
    )
    epoch_lines = [line for line in out.stdout.splitlines() if line.startswith("epoch 1:")]
    assert len(epoch_lines) == 1 and "2 rank(s)" in epoch_lines[0], out.stdout  # rank 0 only
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_pytorch_mnist_example_runs_and_learns(tmp_path):
    """PyTorch's own MNIST example with tapegrad's imports, on a few hundred images."""
    data = "fashion-mnist" if Path("/usr/share/datasets/fashion-mnist").is_dir() else "digits"
    out = _run(
        [sys.executable, str(EXAMPLES / "mnist.py"), "--quick", "--data", data, "--save-model"],
        tmp_path,
        timeout=600,
    )
    assert "Train Epoch: 1 [0/600 (0%)]" in out.stdout
    m = re.search(r"Test set: Average loss: ([\d.]+), Accuracy: (\d+)/300", out.stdout)
    assert m, out.stdout
    assert int(m.group(2)) > 75, out.stdout  # chance is 30 of 300
    assert (tmp_path / "mnist_cnn.safetensors").is_file()
