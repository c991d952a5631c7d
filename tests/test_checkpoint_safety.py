"""Checkpoint files under damage: every broken file gives an error naming the tensor and
why, loading never runs code, and a save killed mid-write loses nothing."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import optim, zoo
from tapegrad.checkpoint import CheckpointError


def _state(seed: int = 0) -> dict:
    tg.manual_seed(seed)
    model = zoo.lenet5()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(tg.randn(2, 1, 28, 28)).sum().backward()
    opt.step()
    return {"model": dict(model.state_dict()), "optimizer": opt.state_dict(), "epoch": 3}


@pytest.fixture
def ckpt(tmp_path) -> Path:
    path = tmp_path / "good.safetensors"
    tg.save(_state(), path)
    return path


def _header(raw: bytes) -> tuple[int, dict]:
    (n,) = struct.unpack("<Q", raw[:8])
    return n, json.loads(raw[8 : 8 + n])


def _with_header(raw: bytes, header: dict) -> bytes:
    """The same data section behind a rewritten header (padded to the old length)."""
    n, _ = _header(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n, "rewritten header must not be longer"
    text = text + b" " * (n - len(text))
    return raw[:8] + text + raw[8 + n :]


def _assert_equal_state(a, b) -> None:
    assert type(a) is type(b) or isinstance(a, np.ndarray)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal_state(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal_state(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_round_trip_is_exact(ckpt):
    _assert_equal_state(tg.load(ckpt), _state())


def test_files_without_checksums_still_load(tmp_path):
    """A plain safetensors file (no tapegrad metadata) loads as a flat dict."""
    from safetensors.numpy import save_file

    p = tmp_path / "plain.safetensors"
    save_file({"w": np.arange(6.0).reshape(2, 3)}, str(p))
    np.testing.assert_array_equal(tg.load(p)["w"], np.arange(6.0).reshape(2, 3))


# --- truncated files --------------------------------------------------------------------


def test_truncated_files_name_the_problem(ckpt, tmp_path):
    raw = ckpt.read_bytes()
    n, header = _header(raw)
    cases = {
        0: "too short",
        5: "too short",
        8: "truncated",
        8 + n // 2: "truncated",
        8 + n: "truncated",  # header intact, no data at all
        len(raw) - 1: "truncated",
        len(raw) - 1000: "truncated",
    }
    for cut, why in cases.items():
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError) as info:
            tg.load(bad)
        msg = str(info.value)
        assert msg.startswith("tapegrad.load") and str(bad) in msg, msg
        assert why in msg, (cut, msg)
        if cut >= 8 + n + 1:
            # inside the data: the message names a tensor whose bytes are really missing
            named = re.search(r"tensor '([^']+)'", msg)
            assert named, msg
            assert 8 + n + header[named.group(1)]["data_offsets"][1] > cut, msg


# --- corrupted files --------------------------------------------------------------------


def test_corrupted_header_fields_name_the_tensor(ckpt, tmp_path):
    raw = ckpt.read_bytes()
    n, header = _header(raw)
    name = "model/classifier.0.weight"
    assert name in header
    mutations = {
        "shape": lambda e: e.update(shape=[e["shape"][0], e["shape"][1] + 1]),
        "dtype": lambda e: e.update(dtype="F64"),
        "bad dtype": lambda e: e.update(dtype="Q7"),
        "offsets": lambda e: e.update(
            data_offsets=[e["data_offsets"][0] + 4, e["data_offsets"][1]]
        ),
        "missing": lambda e: e.pop("data_offsets"),
    }
    for label, mutate in mutations.items():
        h = json.loads(json.dumps(header))
        mutate(h[name])
        bad = tmp_path / f"{label.replace(' ', '_')}.safetensors"
        bad.write_bytes(_with_header(raw, h))
        with pytest.raises(CheckpointError) as info:
            tg.load(bad)
        msg = str(info.value)
        assert repr(name) in msg, (label, msg)


def test_garbled_header_bytes(ckpt, tmp_path):
    raw = bytearray(ckpt.read_bytes())
    raw[9:20] = b"\xff" * 11  # inside the JSON text
    bad = tmp_path / "garbled.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="not JSON|not a safetensors"):
        tg.load(bad)


def test_huge_header_length_is_refused_without_allocating(tmp_path):
    bad = tmp_path / "huge.safetensors"
    bad.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointError, match="header claims"):
        tg.load(bad)


def test_damaged_tree_metadata(ckpt, tmp_path):
    raw = ckpt.read_bytes()
    n, header = _header(raw)
    meta = header["__metadata__"]
    tree = json.loads(meta["tapegrad.tree"])
    # point one reference at a tensor the file does not hold
    tree["__dict__"]["model"]["__dict__"]["classifier.0.bias"] = {"__tensor__": "model/ghost"}
    meta["tapegrad.tree"] = json.dumps(tree, separators=(",", ":"))
    bad = tmp_path / "ghost.safetensors"
    body = json.dumps(header, separators=(",", ":")).encode()
    bad.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n :])
    with pytest.raises(CheckpointError, match="'model/ghost'"):
        tg.load(bad)
    meta["tapegrad.tree"] = "{not json"
    body = json.dumps(header, separators=(",", ":")).encode()
    bad.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n :])
    with pytest.raises(CheckpointError, match="metadata is damaged"):
        tg.load(bad)


def test_corrupted_tensor_bytes_are_detected_and_named(ckpt, tmp_path):
    """Flipped bits in the data section: a checksum mismatch names the tensor."""
    raw = bytearray(ckpt.read_bytes())
    n, header = _header(bytes(raw))
    name = "model/features.3.weight"
    lo, hi = header[name]["data_offsets"]
    raw[8 + n + (lo + hi) // 2] ^= 0x40
    bad = tmp_path / "bitflip.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        tg.load(bad)
    assert repr(name) in str(info.value) and "checksum" in str(info.value)


# --- foreign files: nothing is ever executed ----------------------------------------------


class _Exploit:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _foreign_files(tmp_path: Path) -> dict[str, Path]:
    marker = tmp_path / "PWNED"
    files = {}
    p = tmp_path / "exploit.safetensors"
    p.write_bytes(pickle.dumps({"model": _Exploit(str(marker))}))
    files["pickle"] = p
    p = tmp_path / "random.safetensors"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    files["random bytes"] = p
    p = tmp_path / "array.npy"
    np.save(p, np.arange(10.0))
    files["npy"] = p
    p = tmp_path / "text.safetensors"
    p.write_text("hello, this is not a checkpoint\n" * 10)
    files["text"] = p
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    files["empty"] = p
    p = tmp_path / "zip.safetensors"
    import zipfile

    with zipfile.ZipFile(p, "w") as z:  # the layout of a torch.save file
        z.writestr("archive/data.pkl", pickle.dumps(_Exploit(str(marker))))
    files["zip of pickle"] = p
    return files


def test_foreign_files_raise_and_never_execute(tmp_path):
    marker = tmp_path / "PWNED"
    for label, path in _foreign_files(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            tg.load(path)
        assert str(path) in str(info.value), label
        assert not marker.exists(), f"loading a {label} file ran code"


def test_torch_save_file_is_refused_without_unpickling(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    p = tmp_path / "torch.pt"
    torch.save({"w": torch.ones(3), "x": _Exploit(str(marker))}, p)
    with pytest.raises(CheckpointError):
        tg.load(p)
    assert not marker.exists()


def test_checkpoint_module_has_no_code_execution_paths():
    import tapegrad.checkpoint as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    banned_modules = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "torch", "importlib"}
    banned_calls = {"eval", "exec", "compile", "__import__"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not {n.split(".")[0] for n in names} & banned_modules, ast.dump(node)
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")
            assert name not in banned_calls, f"checkpoint.py calls {name}"
            # np.load would unpickle object arrays; safetensors' own readers are fine
            if name == "load" and isinstance(f, ast.Attribute):
                assert getattr(f.value, "id", "") not in ("np", "numpy", "pickle"), ast.dump(f)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        tg.load(tmp_path / "nope.safetensors")
    with pytest.raises((FileNotFoundError, CheckpointError, IsADirectoryError)):
        tg.load(tmp_path)


# --- shapes that do not fit the model -------------------------------------------------------


def test_shape_mismatch_names_the_tensor_and_both_shapes(ckpt):
    state = tg.load(ckpt)
    other = zoo.lenet5(num_classes=7)
    before = {k: v.copy() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError) as info:
        other.load_state_dict(state["model"])
    msg = str(info.value)
    assert "'classifier.4.weight'" in msg and "(10, 84)" in msg and "(7, 84)" in msg, msg
    # nothing was half-loaded before the mismatch was found
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_missing_and_unexpected_keys_are_listed(ckpt):
    state = tg.load(ckpt)["model"]
    del state["features.0.bias"]
    state["features.9.weight"] = np.zeros(3, np.float32)
    with pytest.raises(KeyError) as info:
        zoo.lenet5().load_state_dict(state)
    assert "features.0.bias" in str(info.value) and "features.9.weight" in str(info.value)


def test_dtype_of_loaded_tensor_follows_the_model(ckpt):
    state = tg.load(ckpt)["model"]
    state = {k: v.astype(np.float64) for k, v in state.items()}
    m = zoo.lenet5()
    m.load_state_dict(state)
    assert all(p.dtype == np.float32 for p in m.parameters())


# --- a save killed mid-write ----------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import tapegrad as tg
    import tapegrad.checkpoint as ck

    path, mode = sys.argv[1], sys.argv[2]
    big = {"step": 0, "w": np.zeros((1024, 1024, 8), np.float32), "b": np.zeros(64, np.float32)}
    if mode == "fsync":
        real = os.fsync
        def slow_fsync(fd):
            print("WRITTEN", flush=True)   # the temp file is complete but not yet renamed
            time.sleep(60)
            real(fd)
        ck.os.fsync = slow_fsync
        print("START", flush=True)
        tg.save(big, path)
    else:
        print("START", flush=True)
        step = 1
        while True:  # keep overwriting: the kill lands at an arbitrary point of a write
            big["step"] = step
            big["w"].fill(step)
            big["b"].fill(step)
            tg.save(big, path)
            step += 1
    """
)


def _spawn(path: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TAPEGRAD_NUM_THREADS": "1"},
    )
    assert proc.stdout.readline().strip() == "START"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_kill_after_write_before_rename_keeps_the_old_checkpoint(ckpt):
    original = ckpt.read_bytes()
    proc = _spawn(ckpt, "fsync")
    assert proc.stdout.readline().strip() == "WRITTEN"
    _kill(proc)
    assert ckpt.read_bytes() == original
    _assert_equal_state(tg.load(ckpt), _state())
    leftovers = [p.name for p in ckpt.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the killed save should have left only its temp file behind"
    # the next save of that file removes what the killed one left; a live writer's temp
    # file (this process's parent stands in for one) and other files stay
    live = ckpt.parent / f".{ckpt.name}.{socket.gethostname()}.{os.getppid()}.abc.tmp"
    live.write_bytes(b"in progress")
    other = ckpt.parent / f".other.safetensors.{socket.gethostname()}.{proc.pid}.abc.tmp"
    other.write_bytes(b"another file's")
    tg.save(_state(), ckpt)
    left = sorted(p.name for p in ckpt.parent.iterdir() if p.name.endswith(".tmp"))
    assert left == sorted([live.name, other.name])


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.45])
def test_kill_at_random_points_of_repeated_saves(ckpt, delay):
    """Whatever moment the kill lands, the file is the previous or a complete new state."""
    proc = _spawn(ckpt, "loop")
    time.sleep(delay)
    _kill(proc)
    state = tg.load(ckpt)
    if "model" in state:  # killed before the first rename: the original survives
        _assert_equal_state(state, _state())
        return
    step = state["step"]
    assert step >= 1
    # every tensor comes from the same save: no mixing of old and new bytes
    assert (state["w"] == step).all() and (state["b"] == step).all()


# --- --resume after a real kill -9 ------------------------------------------------------------


def _write_idx(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(head + arr.tobytes())


def _fake_fashion(d: Path) -> Path:
    d.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 320), ("t10k", 64)):
        labels = rng.integers(0, 10, n)
        imgs = rng.integers(0, 80, (n, 28, 28))
        for i, c in enumerate(labels):  # a learnable bright block per class
            imgs[i, 2 * c : 2 * c + 6, 4:20] = 250
        _write_idx(d / f"{prefix}-images-idx3-ubyte", imgs)
        _write_idx(d / f"{prefix}-labels-idx1-ubyte", labels)
    return d


def test_resume_after_kill_9_matches_an_uninterrupted_run(tmp_path):
    """A training process killed with SIGKILL mid-run, resumed in a new process from its
    last checkpoint, ends with exactly the weights of a run that was never interrupted."""
    data = _fake_fashion(tmp_path / "data")

    def cmd(out: Path, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "tapegrad", "train", "lenet5", "--data", "fashion-mnist",
            "--data-dir", str(data), "--epochs", "4", "--batch-size", "32", "--threads", "1",
            "--augment", "--seed", "5", "--no-progress", "--no-plot", "--out", str(out), *extra,
        ]  # fmt: skip

    env = {**os.environ, "TAPEGRAD_NUM_THREADS": "1"}
    full = tmp_path / "full"
    done = subprocess.run(cmd(full), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    part = tmp_path / "part"
    proc = subprocess.Popen(cmd(part), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    while not (part / "epoch1.safetensors").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    _kill(proc)  # somewhere in epoch 2 (or while writing its checkpoint)
    assert not (part / "epoch4.safetensors").exists()
    interrupted_at = tg.load(part / "last.safetensors")["epoch"]
    assert interrupted_at in (1, 2, 3)

    resumed = subprocess.run(
        cmd(part, "--resume", str(part / "last.safetensors")),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {part / 'last.safetensors'} after epoch {interrupted_at}" in (
        resumed.stdout
    )
    a, b = tg.load(full / "last.safetensors"), tg.load(part / "last.safetensors")
    assert a["epoch"] == b["epoch"] == 4
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k], err_msg=k)
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k, v in a["optimizer"]["state"].items():
        for name in v:
            np.testing.assert_array_equal(v[name], b["optimizer"]["state"][k][name])
    rows = [json.loads(r)["epoch"] for r in (part / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3, 4]
