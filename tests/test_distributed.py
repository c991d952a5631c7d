"""tapegrad.distributed: sampler sharding, and data-parallel training under ``mpirun -n 2``.

The MPI tests launch this file as a worker script (``python tests/test_distributed.py
<mode> <outdir>``) under ``mpirun`` in a subprocess with a timeout, then check what the
ranks wrote from the single pytest process (which never imports mpi4py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tapegrad as tg
from tapegrad import optim, zoo
from tapegrad.distributed import DistributedSampler
from tapegrad.nn import functional as F

HERE = Path(__file__).resolve()
STEPS = 20
PER_RANK = 8  # images per rank per step; the single-process reference sees 2 * PER_RANK
LR, MOMENTUM = 0.05, 0.9
INIT_SEED = 100  # rank r initialises with INIT_SEED + r; the broadcast makes rank 0's win


# --- sampler (no MPI needed) -------------------------------------------------------------


@given(
    n=st.integers(1, 60),
    world=st.integers(1, 5),
    drop_last=st.booleans(),
    epoch=st.integers(0, 3),
)
def test_sampler_shards_are_disjoint_and_cover(n, world, drop_last, epoch):
    if drop_last and n < world:
        with pytest.raises(ValueError, match="DistributedSampler"):
            DistributedSampler(n, world, 0, drop_last=drop_last)
        return
    shards = []
    for r in range(world):
        s = DistributedSampler(n, num_replicas=world, rank=r, seed=7, drop_last=drop_last)
        s.set_epoch(epoch)
        idx = s.indices()
        assert len(idx) == len(s) == len(list(s))
        shards.append(idx)
    sizes = {len(x) for x in shards}
    assert len(sizes) == 1  # equal step counts on every rank
    allidx = np.concatenate(shards)
    assert allidx.min() >= 0 and allidx.max() < n
    if drop_last:
        # strictly disjoint; only n % world items are left out
        assert len(np.unique(allidx)) == len(allidx) == n - n % world
    else:
        # everything covered; repeats only to pad up to a multiple of world
        assert set(allidx.tolist()) == set(range(n))
        assert len(allidx) - len(np.unique(allidx)) == len(allidx) - n
        assert len(allidx) == -(-n // world) * world


def test_sampler_reshuffles_by_epoch_and_seed():
    def shard(seed, epoch, rank=0):
        s = DistributedSampler(list(range(100)), num_replicas=2, rank=rank, seed=seed)
        s.set_epoch(epoch)
        return s.indices()

    np.testing.assert_array_equal(shard(3, 1), shard(3, 1))  # reproducible
    assert not np.array_equal(shard(3, 0), shard(3, 1))  # new order each epoch
    assert not np.array_equal(shard(3, 0), shard(4, 0))  # and per seed
    assert not np.array_equal(shard(3, 0), np.arange(0, 100, 2))  # actually shuffled
    s = DistributedSampler(10, num_replicas=2, rank=1, shuffle=False)
    np.testing.assert_array_equal(s.indices(), [1, 3, 5, 7, 9])


def test_sampler_subset_follows_the_epoch():
    data = tg.data.TensorDataset(np.arange(10.0)[:, None], np.arange(10))
    s = DistributedSampler(len(data), num_replicas=2, rank=1, seed=0)
    view = s.subset(data)
    assert len(view) == 5
    x0, y0 = view[np.arange(5)]
    np.testing.assert_array_equal(y0, s.indices())
    s.set_epoch(1)
    _, y1 = view[np.arange(5)]
    np.testing.assert_array_equal(y1, s.indices())
    assert not np.array_equal(y0, y1)
    with pytest.raises(ValueError, match="subset"):
        DistributedSampler(11, 2, 0).subset(data)


def test_sampler_bad_arguments():
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(10, num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="rank must lie in"):
        DistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="too small"):
        DistributedSampler(0, num_replicas=1, rank=0)


def test_import_does_not_load_mpi4py_and_missing_mpi4py_names_the_fix():
    code = (
        "import sys\n"
        "import tapegrad.distributed as d\n"
        "assert 'mpi4py' not in sys.modules, 'mpi4py imported eagerly'\n"
        "sys.modules['mpi4py'] = None  # what an environment without mpi4py looks like\n"
        "try:\n"
        "    d.init()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('init() without mpi4py did not raise')\n"
        "from tapegrad.cli import main\n"
        "try:\n"
        "    main(['train', 'lenet5', '--distributed'])\n"
        "except SystemExit as e:\n"
        "    print('CLI:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "pip install tapegrad[mpi]" in out
    assert "apt-get install openmpi-bin libopenmpi-dev" in out
    cli_line = next(line for line in out.splitlines() if line.startswith("CLI:"))
    assert "--distributed" in cli_line and "pip install tapegrad[mpi]" in cli_line


# --- MPI runs ----------------------------------------------------------------------------


def needs_mpi(fn):
    """Marked ``mpi``; skipped only where Open MPI itself is absent (CI installs it)."""
    fn = pytest.mark.mpi(fn)
    return pytest.mark.skipif(
        shutil.which("mpirun") is None, reason="Open MPI's mpirun not installed"
    )(fn)


def _require_mpi4py() -> None:
    # find_spec, not import: the pytest process itself stays free of MPI
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py not installed (pip install tapegrad[mpi])")


def mpi_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # CI containers run as root; Open MPI refuses that unless told
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        # one kernel thread per rank on a 2-core machine
        TAPEGRAD_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        # a waiting rank yields its core instead of spinning: CI machines are shared
        OMPI_MCA_mpi_yield_when_idle="1",
    )
    return env


def mpirun(
    n: int, args: list[str], timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``mpirun -n n <args>``; on timeout the whole process group is killed and the test fails."""
    cmd = ["mpirun", "-n", str(n), "--oversubscribe", "--bind-to", "none", *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=mpi_env() if env is None else env,
        start_new_session=True,  # own process group: a hang is cleaned up completely
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} hung for {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def fixed_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((2 * PER_RANK, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 2 * PER_RANK)
    return x, y


def train_steps(model, opt, x, y, sync=None) -> list[float]:
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = F.cross_entropy(model(tg.tensor(x)), tg.tensor(y))
        loss.backward()
        if sync is not None:
            sync()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory):
    """One ``mpirun -n 2`` of the ``train`` worker, shared by the tests that read its output."""
    _require_mpi4py()
    out = tmp_path_factory.mktemp("dp")
    res = mpirun(2, [sys.executable, str(HERE), "train", str(out)])
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return out, res


@pytest.fixture(scope="module")
def single_process():
    """The reference: one process, 20 steps on the concatenated batch (rank 0's init)."""
    # one thread, like each rank: on a busy 2-core machine a second BLAS/OpenMP thread
    # slows these small shapes down many times over
    threads = tg.get_num_threads()
    tg.set_num_threads(1)
    try:
        tg.manual_seed(INIT_SEED)
        model = zoo.lenet5()
        init = model.state_dict()
        opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        x, y = fixed_batch()
        losses = train_steps(model, opt, x, y)
    finally:
        tg.set_num_threads(threads)
    return init, model.state_dict(), losses


@needs_mpi
@pytest.mark.parametrize("bucketing", ["one_bucket", "small_buckets", "grad_hook"])
def test_two_ranks_match_one_process_on_the_concatenated_batch(mpi_run, single_process, bucketing):
    out, _ = mpi_run
    info = json.loads((out / "info_rank0.json").read_text())
    r0 = np.load(out / f"{bucketing}_rank0.npz")
    r1 = np.load(out / f"{bucketing}_rank1.npz")
    # the replicas stay bit-identical (same averaged gradient, same update)
    for k in r0.files:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)

    init, final, losses = single_process
    assert set(r0.files) == set(final)
    moved = max(float(np.abs(final[k] - init[k]).max()) for k in final)
    assert moved > 1e-2, "training did not move the weights; the comparison would be vacuous"
    for k in final:
        np.testing.assert_allclose(r0[k], final[k], rtol=1e-4, atol=2e-5, err_msg=k)
    # the mean over ranks of the per-rank losses is the loss on the whole batch
    np.testing.assert_allclose(info[f"{bucketing}_losses"], losses, rtol=1e-4, atol=1e-5)
    assert losses[-1] < losses[0]


@needs_mpi
def test_bucketing_uses_one_allreduce_per_bucket(mpi_run):
    out, _ = mpi_run
    info = json.loads((out / "info_rank0.json").read_text())
    n_params = 61706
    assert info["one_bucket_buckets"] == [n_params]  # all of lenet5 in one flat buffer
    assert info["one_bucket_calls"] == STEPS  # one Allreduce per step
    sizes = info["small_buckets_buckets"]
    assert len(sizes) > 2 and sum(sizes) == n_params
    assert all(s * 4 <= 64 * 1024 or s == max(sizes) for s in sizes)  # cap respected
    assert info["small_buckets_calls"] == STEPS * len(sizes)


@needs_mpi
def test_broadcast_makes_replicas_start_equal(mpi_run):
    out, _ = mpi_run
    init0 = np.load(out / "init_rank0.npz")
    init1 = np.load(out / "init_rank1.npz")
    tg.manual_seed(INIT_SEED)
    ref = zoo.lenet5().state_dict()
    tg.manual_seed(INIT_SEED + 1)
    rank1_own = zoo.lenet5().state_dict()
    for k in ref:
        np.testing.assert_array_equal(init0[k], ref[k])
        np.testing.assert_array_equal(init1[k], ref[k])  # rank 1's own init was replaced
    assert any(not np.array_equal(rank1_own[k], ref[k]) for k in ref)


@needs_mpi
def test_buffers_local_by_default_synchronised_on_request(mpi_run):
    out, _ = mpi_run
    info = json.loads((out / "info_rank0.json").read_text())
    info1 = json.loads((out / "info_rank1.json").read_text())
    # each rank's running mean saw only its own shard...
    assert info["local_buffer"] != info1["local_buffer"]
    # ...unless synchronised: then both hold the mean of the two ranks' statistics
    expect = (np.array(info["local_buffer"]) + np.array(info1["local_buffer"])) / 2
    np.testing.assert_allclose(info["synced_buffer"], expect, rtol=1e-6)
    np.testing.assert_allclose(info1["synced_buffer"], expect, rtol=1e-6)
    np.testing.assert_allclose(info["synced_once"], expect, rtol=1e-6)
    # real BatchNorm2d: local running stats differ, synchronised ones agree on both ranks
    for key in ("mean", "var"):
        assert info["bn_syncFalse"][key] != info1["bn_syncFalse"][key]
        np.testing.assert_array_equal(info["bn_syncTrue"][key], info1["bn_syncTrue"][key])
    assert info["bn_syncTrue"]["tracked"] == info1["bn_syncTrue"]["tracked"] == 2


@needs_mpi
def test_rank0_checkpoint_loads_in_one_process_and_logs_once(mpi_run):
    out, res = mpi_run
    ckpt = tg.load(out / "ckpt.safetensors")
    final = np.load(out / "one_bucket_rank0.npz")
    model = zoo.lenet5()
    model.load_state_dict(ckpt["model"])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, final[k])
    assert ckpt["step"] == STEPS
    assert res.stdout.count("rank0-log: done") == 1
    # rank 1 saw the finished file right after the barrier in save_checkpoint
    assert json.loads((out / "info_rank1.json").read_text())["ckpt_exists_after_save"]


@needs_mpi
def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    _require_mpi4py()
    res = mpirun(2, [sys.executable, str(HERE), "fail", str(tmp_path)], timeout=120)
    assert res.returncode != 0
    both = res.stdout + res.stderr
    assert "injected failure on rank 1" in both
    assert "RuntimeError" in both
    assert "rank 1 raised an error" in both


@needs_mpi
def test_mismatched_models_are_refused(tmp_path):
    _require_mpi4py()
    env = mpi_env()
    del env["TAPEGRAD_NUM_THREADS"]  # init() picks the threads: cores / ranks on the node
    res = mpirun(2, [sys.executable, str(HERE), "mismatch", str(tmp_path)], 120, env)
    assert res.returncode != 0
    assert "hold different models" in res.stdout + res.stderr
    expect = max(1, (os.cpu_count() or 1) // 2)
    assert res.stdout.count(f"kernel threads: {expect}") == 2, res.stdout


def test_cli_loader_shards_are_the_sampler_shards():
    # `tapegrad train --distributed` shards through DataLoader(rank=, world_size=): the
    # indices must be exactly DistributedSampler(drop_last=True)'s for the same seed/epoch
    n = 23
    ds = tg.data.TensorDataset(np.arange(n)[:, None], np.arange(n))
    for epoch in (0, 2):
        for r in range(3):
            loader = tg.data.DataLoader(ds, 4, shuffle=True, seed=5, rank=r, world_size=3)
            loader.set_epoch(epoch)
            got = np.concatenate([yb for _, yb in loader])
            s = DistributedSampler(n, num_replicas=3, rank=r, seed=5, drop_last=True)
            s.set_epoch(epoch)
            np.testing.assert_array_equal(got, s.indices())


FASHION = Path("/usr/share/datasets/fashion-mnist")
CLI_ARGS = ["train", "lenet5", "--limit-train", "128", "--limit-test", "64", "--epochs", "1"]
CLI_ARGS += ["--batch-size", "32", "--seed", "3", "--no-progress"]


@needs_mpi
@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed")
def test_cli_train_distributed_matches_one_process(tmp_path):
    _require_mpi4py()
    res = mpirun(
        2,
        [sys.executable, "-m", "tapegrad", *CLI_ARGS, "--distributed"]
        + ["--out", str(tmp_path / "dist")],
    )
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert res.stdout.count("epoch 1:") == 1  # rank 0 alone logs
    rows = (tmp_path / "dist" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1  # and alone writes the run directory
    cfg = json.loads((tmp_path / "dist" / "config.json").read_text())
    assert cfg["batch_size"] == 16 and cfg["extra"]["global_batch_size"] == 32

    # the same run in one process, with the same global batch; nothing MPI is imported
    code = (
        "import sys\n"
        "from tapegrad.cli import main\n"
        f"rc = main({[*CLI_ARGS, '--out', str(tmp_path / 'single')]!r})\n"
        "assert 'mpi4py' not in sys.modules, 'mpi4py imported without --distributed'\n"
        "sys.exit(rc)\n"
    )
    single = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=mpi_env(), timeout=300
    )
    assert single.returncode == 0, single.stderr

    dist_ckpt = tg.load(tmp_path / "dist" / "last.safetensors")
    one_ckpt = tg.load(tmp_path / "single" / "last.safetensors")
    model = zoo.lenet5()
    model.load_state_dict(dist_ckpt["model"])  # rank 0's checkpoint, loaded in one process
    tg.manual_seed(3)
    init = zoo.lenet5().state_dict()
    got, want = model.state_dict(), one_ckpt["model"]
    assert max(float(np.abs(got[k] - init[k]).max()) for k in init) > 1e-3
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=2e-5, err_msg=k)


def _fake_mnist(directory: Path, n: int = 32) -> None:
    """Four small MNIST-format IDX files (random pixels and labels) in ``directory``."""
    import struct

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        for kind, arr in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
            ("labels-idx1", rng.integers(0, 10, n).astype(np.uint8)),
        ):
            head = struct.pack(f">BBBB{arr.ndim}I", 0, 0, 8, arr.ndim, *arr.shape)
            (directory / f"{prefix}-{kind}-ubyte").write_bytes(head + arr.tobytes())


def _cli_job(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    """``mpirun -n 2`` of a CLI training run whose ranks are started differently (``mode``);
    it must end, non-zero, well before the hang timeout."""
    _require_mpi4py()
    _fake_mnist(tmp_path / "mnist")
    return mpirun(2, [sys.executable, str(HERE), mode, str(tmp_path)], timeout=150)


@needs_mpi
def test_a_rank_missing_its_data_ends_the_cli_job_with_its_message(tmp_path):
    # rank 1 is given a --data-dir that does not exist: it used to print its line and
    # return 1 while rank 0 waited in a collective until killed
    res = _cli_job(tmp_path, "cli_missing_data")
    both = res.stdout + res.stderr
    assert res.returncode != 0, both
    assert f"not found in {tmp_path / 'nowhere'}" in both, both
    reason = f"mnist: the directory not found in {tmp_path / 'nowhere'}"
    assert f"tapegrad: rank 1: tapegrad train: {reason}" in both, both  # the rank's own reason
    assert "epoch 1:" not in both  # rank 0 did not train on alone


@needs_mpi
def test_ranks_started_with_different_epochs_are_refused_naming_the_field(tmp_path):
    res = _cli_job(tmp_path, "cli_epochs_differ")
    both = res.stdout + res.stderr
    assert res.returncode != 0, both
    assert "ranks were started with different configurations" in both, both
    assert "epochs is 1 on rank 0, 2 on rank 1" in both, both
    assert "batch_size" not in both.split("different configurations")[1].splitlines()[0]
    assert "epoch 1:" not in both


def test_config_fingerprint_names_what_a_replica_must_agree_on(tmp_path):
    _fake_mnist(tmp_path / "mnist")
    cfg = tg.train.TrainConfig(
        model="lenet5", data="mnist", data_dir=str(tmp_path / "mnist"), limit_train=24
    )
    seen = []
    trainer = tg.train.Trainer(cfg, check_config=seen.append)
    assert seen == [trainer.fingerprint()]
    fp = seen[0]
    assert fp["train_samples"] == 24 and fp["test_samples"] == 32
    for key in ("model", "epochs", "batch_size", "seed", "optimizer", "lr", "data"):
        assert fp[key] == getattr(cfg, key), key
    # the global batch of a data-parallel run, not the per-rank share
    cfg.extra["global_batch_size"] = 128
    assert trainer.fingerprint()["batch_size"] == 128


# --- worker side (runs under mpirun) -----------------------------------------------------


class _RunningMean(tg.nn.Module):
    """A linear layer with a batch-norm-like running mean buffer of its input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = tg.nn.Linear(3, 1)
        self.register_buffer("running_mean", tg.zeros(3))

    def forward(self, x):
        self.running_mean.data[...] = 0.5 * self.running_mean.data + 0.5 * x.data.mean(axis=0)
        return self.fc(x)


def _worker_train(out: Path) -> None:
    from tapegrad import distributed as dist

    rank, world = dist.init()
    assert world == 2, world
    x, y = fixed_batch()
    xs, ys = x[rank * PER_RANK : (rank + 1) * PER_RANK], y[rank * PER_RANK : (rank + 1) * PER_RANK]
    info: dict = {}
    for name, cap in (("one_bucket", 25.0), ("small_buckets", 64 / 1024)):
        tg.manual_seed(INIT_SEED + rank)  # different on each rank: the broadcast must fix it
        dp = dist.DataParallel(zoo.lenet5(), bucket_cap_mb=cap)
        if name == "one_bucket":
            np.savez(out / f"init_rank{rank}.npz", **dp.state_dict())
        opt = dp.hook_optimizer(optim.SGD(dp.parameters(), lr=LR, momentum=MOMENTUM))
        losses = train_steps(dp, opt, xs, ys)
        np.savez(out / f"{name}_rank{rank}.npz", **dp.state_dict())
        info[f"{name}_losses"] = [dist.all_reduce_mean(v) for v in losses]
        info[f"{name}_buckets"] = [b.size for b in dp.buckets]
        info[f"{name}_calls"] = dp.allreduce_calls
        if name == "one_bucket":
            path = out / "ckpt.safetensors"
            dist.save_checkpoint({"model": dp.state_dict(), "step": dp.steps}, path)
            info["ckpt_exists_after_save"] = path.exists()

    # the Trainer-style hook: called with the parameter list after backward
    tg.manual_seed(INIT_SEED + rank)
    model = zoo.lenet5()
    params = list(model.parameters())
    hook = dist.GradientHook(params)  # broadcasts rank 0's init now
    opt = optim.SGD(params, lr=LR, momentum=MOMENTUM)
    losses = train_steps(model, opt, xs, ys, sync=lambda: hook(params))
    np.savez(out / f"grad_hook_rank{rank}.npz", **model.state_dict())
    info["grad_hook_losses"] = [dist.all_reduce_mean(v) for v in losses]

    feats = np.random.default_rng(rank).standard_normal((4, 3)).astype(np.float32)
    target = tg.zeros(4, 1)
    for sync in (False, True):
        tg.manual_seed(0)
        dp = dist.DataParallel(_RunningMean(), sync_buffers=sync)
        F.mse_loss(dp(tg.tensor(feats)), target).backward()
        dp.sync_gradients()
        info["synced_buffer" if sync else "local_buffer"] = dp.module.running_mean.data.tolist()
    dp = dist.DataParallel(_RunningMean())
    dp(tg.tensor(feats))
    dp.sync_buffers()
    info["synced_once"] = dp.module.running_mean.data.tolist()

    images = np.random.default_rng(10 + rank).standard_normal((4, 1, 6, 6)).astype(np.float32)
    for sync in (False, True):
        tg.manual_seed(0)
        net = tg.nn.Sequential(tg.nn.Conv2d(1, 3, 3), tg.nn.BatchNorm2d(3))
        dp = dist.DataParallel(net, sync_buffers=sync)
        for _ in range(2):
            dp.zero_grad()
            (dp(tg.tensor(images)) ** 2).mean().backward()
            dp.sync_gradients()
        bn = net[1]
        info[f"bn_sync{sync}"] = {
            "mean": bn.running_mean.data.tolist(),
            "var": bn.running_var.data.tolist(),
            "tracked": int(bn.num_batches_tracked.data),
        }

    (out / f"info_rank{rank}.json").write_text(json.dumps(info))
    dist.print0("rank0-log: done")


def _worker_fail(out: Path) -> None:
    from tapegrad import distributed as dist

    rank, _ = dist.init()
    dp = dist.DataParallel(zoo.lenet5())
    if rank == 1:
        raise RuntimeError("injected failure on rank 1")
    x, y = fixed_batch()
    F.cross_entropy(dp(tg.tensor(x[:2])), tg.tensor(y[:2])).backward()
    dp.sync_gradients()  # rank 1 never joins this Allreduce: without the abort, a hang
    dist.barrier()


def _worker_mismatch(out: Path) -> None:
    from tapegrad import distributed as dist

    rank, _ = dist.init()
    print(f"kernel threads: {tg.get_num_threads()}", flush=True)
    dist.DataParallel(zoo.lenet5(num_classes=10 + rank))


def _worker_cli(out: Path, mode: str) -> None:
    from tapegrad.cli import main

    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    data_dir = out / ("nowhere" if mode == "cli_missing_data" and rank == 1 else "mnist")
    epochs = 1 + rank if mode == "cli_epochs_differ" else 1
    args = ["train", "lenet5", "--data", "mnist", "--data-dir", str(data_dir)]
    args += ["--epochs", str(epochs), "--batch-size", "8", "--limit-train", "16"]
    args += ["--limit-test", "8", "--no-progress", "--no-plot", "--distributed"]
    args += ["--out", str(out / "run")]  # the run folder stays in the test's directory
    sys.exit(main(args))


if __name__ == "__main__":
    mode, outdir = sys.argv[1], Path(sys.argv[2])
    if mode.startswith("cli_"):
        _worker_cli(outdir, mode)
    else:
        workers = {"train": _worker_train, "fail": _worker_fail, "mismatch": _worker_mismatch}
        workers[mode](outdir)
