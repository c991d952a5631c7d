"""What a convolution will allocate is checked against the memory actually available.

The im2col/col2im kernels add up their column buffer, GEMM workspace, output and
gradients before allocating: when the whole batch does not fit they go one image at a
time, and when even that does not fit they raise a MemoryError naming every buffer
(the process is not killed). ``clear_workspace()`` hands the buffers back to the system.
The limits are simulated (a patched ``available_bytes`` or a fake cgroup tree), so the
tests run at small sizes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad.kernels import memory
from tapegrad.kernels.conv import im2col as alg


@pytest.fixture
def limit(monkeypatch):
    """Check every call (not only large ones) against a chosen number of bytes."""
    alg.clear_workspace()
    monkeypatch.setattr(memory, "CHECK_ABOVE", 0)
    box = {"bytes": None}
    monkeypatch.setattr(memory, "available_bytes", lambda: box["bytes"])
    yield box
    alg.clear_workspace()


def _case():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 16, 16)).astype(np.float32)
    w = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    return x, w  # output 256 KiB, batch GEMM workspace 256 KiB, batch columns 36 KiB


def _im2col_variants():
    return [v for v in tg.kernels.variants("conv2d") if v.startswith("im2col")]


@pytest.mark.parametrize("variant", _im2col_variants())
def test_forward_goes_image_by_image_when_the_batch_does_not_fit(limit, variant):
    x, w = _case()
    with tg.kernels.use(conv2d="reference"):
        want = F.conv2d(tg.tensor(x), tg.tensor(w), padding=1).data
    limit["bytes"] = 400 << 10  # batch: 36 + 256 + 256 KiB; one image: 9 + 256 KiB
    with tg.kernels.use(conv2d=variant):
        got = F.conv2d(tg.tensor(x), tg.tensor(w), padding=1).data
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert alg._growth("gemm", (64, 4 * 256), np.float32) > 0  # no batch GEMM buffer made


@pytest.mark.parametrize("variant", _im2col_variants())
def test_forward_that_cannot_fit_raises_memory_error_naming_buffers(limit, variant):
    x, w = _case()
    limit["bytes"] = 200 << 10
    with tg.kernels.use(conv2d=variant), pytest.raises(MemoryError) as info:
        F.conv2d(tg.tensor(x), tg.tensor(w), padding=1)
    msg = str(info.value)
    assert msg.startswith("conv2d (im2col): needs"), msg
    assert "output 256 KiB" in msg and "column buffer" in msg and "200 KiB" in msg, msg


@pytest.mark.parametrize("variant", _im2col_variants())
def test_backward_chunks_to_fit_and_refuses_what_cannot(limit, variant):
    x, w = _case()
    with tg.kernels.use(conv2d="reference"):
        xr, wr = tg.tensor(x, requires_grad=True), tg.tensor(w, requires_grad=True)
        F.conv2d(xr, wr, padding=1).sum().backward()
    xt, wt = tg.tensor(x, requires_grad=True), tg.tensor(w, requires_grad=True)
    with tg.kernels.use(conv2d=variant):
        y = F.conv2d(xt, wt, padding=1)
        # batch: columns 36 + column gradient 36 + GEMM 256 KiB + gradients; one image fits
        alg.clear_workspace()
        limit["bytes"] = 200 << 10
        y.sum().backward()
    assert alg._growth("gemm", (64, 4 * 256), np.float32) > 0  # went image by image
    np.testing.assert_allclose(xt.grad.data, xr.grad.data, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(wt.grad.data, wr.grad.data, rtol=1e-4, atol=1e-3)
    limit["bytes"] = None
    with tg.kernels.use(conv2d=variant):
        y = F.conv2d(xt, wt, padding=1)
        limit["bytes"] = 1 << 10
        with pytest.raises(MemoryError, match=r"conv2d \(im2col\) backward: needs .*gradient"):
            y.sum().backward()


@pytest.mark.parametrize(
    "variant", [v for v in tg.kernels.variants("conv_transpose2d") if v.startswith("col2im")]
)
def test_col2im_refuses_what_cannot_fit(limit, variant):
    x = np.ones((2, 8, 8, 8), np.float32)
    w = np.ones((8, 16, 3, 3), np.float32)
    limit["bytes"] = 8 << 10
    with tg.kernels.use(conv_transpose2d=variant), pytest.raises(MemoryError) as info:
        F.conv_transpose2d(tg.tensor(x), tg.tensor(w))
    msg = str(info.value)
    assert msg.startswith("conv_transpose2d (col2im): needs"), msg
    assert "output" in msg and "column buffer" in msg, msg


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_available_bytes_reads_cgroup_limits(tmp_path, monkeypatch, version):
    """The least of MemAvailable and every level's limit minus its usage (less the
    reclaimable page cache); an unlimited level counts for nothing."""
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc_cgroup"
    mib = 2**20
    if version == "v2":
        _write(str(proc), "0::/jobs/job1\n")
        _write(str(root / "jobs/job1/memory.max"), f"{1024 * mib}\n")
        _write(str(root / "jobs/job1/memory.current"), f"{900 * mib}\n")
        _write(str(root / "jobs/job1/memory.stat"), f"anon 1\ninactive_file {100 * mib}\n")
        _write(str(root / "jobs/memory.max"), "max\n")
        _write(str(root / "jobs/memory.current"), f"{900 * mib}\n")
    else:
        _write(str(proc), "5:cpu:/\n4:memory:/jobs/job1\n")
        base = root / "memory"
        _write(str(base / "jobs/job1/memory.limit_in_bytes"), f"{1024 * mib}\n")
        _write(str(base / "jobs/job1/memory.usage_in_bytes"), f"{900 * mib}\n")
        _write(str(base / "jobs/job1/memory.stat"), f"total_inactive_file {100 * mib}\n")
        _write(str(base / "memory.limit_in_bytes"), "9223372036854771712\n")
        _write(str(base / "memory.usage_in_bytes"), f"{900 * mib}\n")
    dirs = memory._cgroup_dirs(str(proc), str(root))
    assert dirs and dirs[0][0].endswith("job1")
    monkeypatch.setattr(memory, "_cgroup_dirs", lambda: dirs)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 64 * 2**30)
    assert memory.available_bytes() == 224 * mib
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 100 * mib)
    assert memory.available_bytes() == 100 * mib


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux RSS")
def test_clear_workspace_gives_memory_back():
    """After a large batch the im2col buffers (kept for reuse, and retained by the heap
    policy) stay resident until clear_workspace() drops them and trims the heap."""
    alg.clear_workspace()
    x = tg.tensor(np.ones((64, 1, 64, 64), np.float32))
    w = tg.tensor(np.ones((32, 1, 3, 3), np.float32))  # GEMM workspace 32 MiB
    with tg.kernels.use(conv2d=_im2col_variants()[0]):
        F.conv2d(x, w, padding=1)
    held = _rss()
    alg.clear_workspace()
    assert held - _rss() > 24 * 2**20, (held, _rss())


def _w(*shape):
    return tg.tensor(np.ones(shape, np.float32))


# (op, input shape, call): each output is 256 KiB
_DIRECT = [
    ("conv2d", (4, 1, 16, 16), lambda x: F.conv2d(x, _w(64, 1, 3, 3), padding=1)),
    ("depthwise_conv2d", (4, 2, 16, 16), lambda x: F.conv2d(x, _w(64, 1, 3, 3), groups=2)),
    ("conv_transpose2d", (4, 1, 14, 14), lambda x: F.conv_transpose2d(x, _w(1, 64, 3, 3))),
]


@pytest.mark.parametrize("op,shape,call", _DIRECT, ids=[d[0] for d in _DIRECT])
def test_direct_variants_refuse_an_output_that_cannot_fit(limit, op, shape, call):
    x = tg.tensor(np.ones(shape, np.float32))
    limit["bytes"] = 16 << 10
    variants = [v for v in tg.kernels.variants(op) if v.startswith("direct")]
    assert variants, op
    for variant in variants:
        with tg.kernels.use(**{op: variant}), pytest.raises(MemoryError) as info:
            call(x)
        msg = str(info.value)
        assert msg.startswith(f"{op} (direct): needs") and "output" in msg, msg
