"""Checkpoints keep every tensor's shape and dtype (0-d, empty, int64, float16, ...), every
zoo model and layer loads back its own state, files get the umask's permissions, and
malformed headers or non-files give a CheckpointError naming the file and the field."""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import nn, optim, zoo
from tapegrad.checkpoint import CheckpointError

# --- shapes and dtypes ---------------------------------------------------------------------

ARRAYS = {
    "scalar_i64": np.array(7, dtype=np.int64),
    "scalar_f32": np.array(1.5, dtype=np.float32),
    "scalar_bool": np.array(True),
    "empty": np.zeros((0,), dtype=np.float32),
    "empty_2d": np.zeros((3, 0), dtype=np.float64),
    "int64": np.arange(-5, 5, dtype=np.int64).reshape(2, 5),
    "float16": np.array([[0.5, -2.0], [65504.0, 1e-4]], dtype=np.float16),
    "uint8": np.arange(6, dtype=np.uint8),
    "float64": np.linspace(0, 1, 7),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
    "strided": np.arange(20, dtype=np.int32)[::3],
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_every_kind_of_tensor_round_trips_with_shape_and_dtype(tmp_path, name):
    a = ARRAYS[name]
    tg.save({"t": a, "nested": [a, {"again": a}]}, tmp_path / "c.safetensors")
    back = tg.load(tmp_path / "c.safetensors")
    for b in (back["t"], back["nested"][0], back["nested"][1]["again"]):
        assert b.shape == a.shape and b.dtype == a.dtype, (name, b.shape, b.dtype)
        np.testing.assert_array_equal(b, a)


def _trained_state(model: nn.Module, x: np.ndarray) -> dict:
    """State after one training step, so running statistics and counters are non-trivial."""
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    out = model(tg.Tensor(x))
    out.sum().backward()
    opt.step()
    return {"model": dict(model.state_dict()), "optimizer": opt.state_dict()}


def _array(v) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else np.asarray(v.data)


def _assert_same_state(saved: dict, fresh: nn.Module) -> None:
    now = fresh.state_dict()
    assert saved.keys() == now.keys()
    for k, v in saved.items():
        got, want = _array(now[k]), _array(v)
        assert got.shape == want.shape and got.dtype == want.dtype, k
        np.testing.assert_array_equal(got, want, err_msg=k)


@pytest.mark.parametrize("name", zoo.available())
def test_every_zoo_model_loads_its_own_checkpoint(tmp_path, name):
    tg.manual_seed(0)
    side = zoo.DEFAULT_INPUT.get(name, 28)
    model = zoo.get_model(name)
    state = _trained_state(model, np.random.default_rng(0).random((2, 1, side, side), np.float32))
    tg.save(state, tmp_path / "m.safetensors")
    back = tg.load(tmp_path / "m.safetensors")
    tg.manual_seed(1)
    fresh = zoo.get_model(name)
    fresh.load_state_dict(back["model"])
    _assert_same_state(state["model"], fresh)
    # the loaded model trains on: its counters and running statistics are writable
    _trained_state(fresh, np.ones((2, 1, side, side), np.float32))


LAYERS = {
    "Conv1d": (lambda: nn.Conv1d(2, 3, 3), (2, 2, 8)),
    "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 6, 6)),
    "Conv2d_depthwise": (lambda: nn.Conv2d(2, 2, 3, groups=2, bias=False), (2, 2, 6, 6)),
    "ConvTranspose1d": (lambda: nn.ConvTranspose1d(2, 3, 3, stride=2), (2, 2, 5)),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2), (2, 2, 4, 4)),
    "Linear": (lambda: nn.Linear(4, 3), (2, 4)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(4), (3, 4)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(2), (3, 2, 4, 4)),
    "BatchNorm2d_untracked": (
        lambda: nn.BatchNorm2d(2, track_running_stats=False),
        (3, 2, 4, 4),
    ),
    "LayerNorm": (lambda: nn.LayerNorm(4), (2, 3, 4)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    "Sequential": (
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten()),
        (2, 1, 5, 5),
    ),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_loads_its_own_checkpoint(tmp_path, name):
    build, shape = LAYERS[name]
    tg.manual_seed(0)
    layer = build()
    state = _trained_state(layer, np.random.default_rng(1).standard_normal(shape, np.float32))
    tg.save(state, tmp_path / "l.safetensors")
    tg.manual_seed(5)
    fresh = build()
    fresh.load_state_dict(tg.load(tmp_path / "l.safetensors")["model"])
    _assert_same_state(state["model"], fresh)


# --- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoint_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        tg.save({"w": np.ones(3)}, tmp_path / "c.safetensors")
        tg.save({"w": np.zeros(3)}, tmp_path / "c.safetensors")  # the replacing save too
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.safetensors").stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


# --- malformed headers ---------------------------------------------------------------------


def _file_with_header(path: Path, header: dict | str, data: bytes = b"\0" * 16) -> Path:
    text = header if isinstance(header, str) else json.dumps(header)
    body = text.encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


GOOD = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
MALFORMED = {
    "metadata_list": ({"__metadata__": ["a"], "w": GOOD}, "__metadata__"),
    "metadata_string": ({"__metadata__": "abc", "w": GOOD}, "__metadata__"),
    "metadata_value_not_string": ({"__metadata__": {"format": 3}, "w": GOOD}, "__metadata__"),
    "offsets_length_1": ({"w": {**GOOD, "data_offsets": [0]}}, "data_offsets"),
    "offsets_strings": ({"w": {**GOOD, "data_offsets": ["0", "16"]}}, "data_offsets"),
    "offsets_negative": ({"w": {**GOOD, "data_offsets": [-4, 12]}}, "data_offsets"),
    "offsets_object": ({"w": {**GOOD, "data_offsets": {"a": 1}}}, "data_offsets"),
    "dtype_list": ({"w": {**GOOD, "dtype": ["F32"]}}, "dtype"),
    "dtype_number": ({"w": {**GOOD, "dtype": 4}}, "dtype"),
    "shape_string": ({"w": {**GOOD, "shape": "abc"}}, "shape"),
    "shape_float": ({"w": {**GOOD, "shape": [2.0, 2]}}, "shape"),
    "shape_bool": ({"w": {**GOOD, "shape": [True, 4]}}, "shape"),
    "shape_negative": ({"w": {**GOOD, "shape": [-2, -2]}}, "shape"),
    "shape_2_to_70": ({"w": {**GOOD, "shape": [2**70]}}, "shape"),
    "entry_list": ({"w": [1, 2]}, "malformed entry"),
    "deep_json": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "deep_object": ('{"w":' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_headers_are_checkpoint_errors_naming_file_and_field(tmp_path, case):
    header, field = MALFORMED[case]
    path = _file_with_header(tmp_path / f"{case}.safetensors", header)
    with pytest.raises(CheckpointError) as info:
        tg.load(path)
    msg = str(info.value)
    assert str(path) in msg and field in msg, msg
    if case.startswith("metadata") or case.startswith("deep"):
        with pytest.raises(CheckpointError, match=field):
            tg.checkpoint.metadata(path)


def _saved_with_tree(tmp_path: Path, tree: str, name: str) -> Path:
    """A file written by tapegrad whose structure metadata is replaced by ``tree``."""
    good = tmp_path / "good.safetensors"
    tg.save({"w": np.ones(2, np.float32)}, good)
    raw = good.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"]["tapegrad.tree"] = tree
    return _file_with_header(tmp_path / name, header, raw[8 + n :])


@pytest.mark.parametrize(
    "tree",
    [
        '{"__dict__": [1, 2]}',
        '{"__dict__": {"w": {"__tensor__": 5}}}',
        '{"__list__": "abc"}',
        '{"__dict__": {}, "__list__": []}',
        "[1, 2]",
        '{"__list__": ' * 50_000 + "[]" + "}" * 50_000,
        '{"__dict__": {"a": ' * 3_000 + "1" + "}}" * 3_000,
    ],
    ids=["dict_list", "tensor_int", "list_str", "two_kinds", "bare_list", "deep", "deep_tree"],
)
def test_malformed_structure_metadata_is_a_checkpoint_error(tmp_path, tree):
    path = _saved_with_tree(tmp_path, tree, "tree.safetensors")
    with pytest.raises(CheckpointError, match="tapegrad.tree") as info:
        tg.load(path)
    assert str(path) in str(info.value)


def test_damaged_checksum_table_is_a_checkpoint_error(tmp_path):
    good = tmp_path / "good.safetensors"
    tg.save({"w": np.ones(2, np.float32)}, good)
    raw = good.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"]["tapegrad.crc32"] = "[1, 2]"
    path = _file_with_header(tmp_path / "crc.safetensors", header, raw[8 + n :])
    with pytest.raises(CheckpointError, match="tapegrad.crc32"):
        tg.load(path)


# --- things that are not checkpoint files --------------------------------------------------


def test_symlink_to_a_device_says_what_it_is(tmp_path):
    link = tmp_path / "zero.safetensors"
    link.symlink_to("/dev/zero")
    for fn in (tg.load, tg.checkpoint.metadata):
        with pytest.raises(CheckpointError, match="character device") as info:
            fn(link)
        assert str(link) in str(info.value) and "no checkpoint" not in str(info.value)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="a pipe"):
        tg.load(fifo)


def test_directory_and_dangling_symlink_say_what_they_are(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory") as info:
        tg.load(tmp_path)
    assert "no checkpoint" not in str(info.value)
    tg.save({"w": np.ones(1)}, tmp_path / "last.safetensors")
    with pytest.raises(IsADirectoryError, match="last.safetensors"):
        tg.load(tmp_path)
    link = tmp_path / "dangling.safetensors"
    link.symlink_to(tmp_path / "gone.safetensors")
    with pytest.raises(FileNotFoundError, match="symlink to the missing"):
        tg.load(link)
