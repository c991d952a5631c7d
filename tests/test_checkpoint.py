"""tapegrad.save / tapegrad.load: nested state round trips through plain safetensors files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import checkpoint, optim, zoo
from tapegrad.checkpoint import CheckpointError


def _nested_state():
    rng = np.random.default_rng(1)
    return {
        "model": {"w": rng.standard_normal((3, 2)).astype(np.float32), "b": np.arange(4)},
        "optimizer": {"lr": 0.1, "step_count": 7, "state": [{"m": np.ones(3)}, {}]},
        "epoch": 3,
        "flags": (True, None, "text", 2**100),
        "mask": np.array([1, 0, 255], np.uint8),
        "param": tg.Tensor(np.full((2, 2), 0.5, np.float64), requires_grad=True),
        "scalar": np.float32(1.5),
    }


def test_nested_round_trip(tmp_path):
    path = tmp_path / "ck.safetensors"
    tg.save(_nested_state(), path)
    got = tg.load(path)
    want = _nested_state()
    np.testing.assert_array_equal(got["model"]["w"], want["model"]["w"])
    assert got["model"]["w"].dtype == np.float32 and got["model"]["b"].dtype == np.int64
    assert got["optimizer"]["lr"] == 0.1 and got["optimizer"]["step_count"] == 7
    np.testing.assert_array_equal(got["optimizer"]["state"][0]["m"], np.ones(3))
    assert got["optimizer"]["state"][1] == {}
    assert got["epoch"] == 3 and got["flags"] == (True, None, "text", 2**100)
    assert got["mask"].dtype == np.uint8 and list(got["mask"]) == [1, 0, 255]
    assert got["param"].dtype == np.float64 and got["param"].shape == (2, 2)
    assert got["scalar"] == 1.5


def test_file_is_plain_safetensors(tmp_path):
    from safetensors.numpy import load_file

    path = tmp_path / "ck.safetensors"
    tg.save(_nested_state(), path)
    flat = load_file(str(path))
    assert set(flat) == {
        "model/w",
        "model/b",
        "optimizer/state/0/m",
        "mask",
        "param",
    }
    meta = checkpoint.metadata(path)
    assert meta["format"] == "tapegrad.checkpoint"
    json.loads(meta["tapegrad.tree"])  # the structure is readable JSON


def test_foreign_safetensors_file_loads_flat(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"features.0.weight": np.ones((6, 1, 5, 5), np.float32)}, str(path))
    got = tg.load(path)
    assert list(got) == ["features.0.weight"] and got["features.0.weight"].shape == (6, 1, 5, 5)


def test_training_state_round_trip_restores_optimizer(tmp_path):
    tg.manual_seed(0)
    model = zoo.lenet5()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    path = tmp_path / "train.safetensors"
    tg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, path)
    state = tg.load(path)
    tg.manual_seed(5)
    model2 = zoo.lenet5()
    opt2 = optim.SGD(model2.parameters(), lr=0.5, momentum=0.9)
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    assert opt2.lr == 0.1 and opt2.param_groups[0]["momentum"] == 0.9
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    for p1, p2 in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(
            opt.state[p1]["momentum_buffer"], opt2.state[p2]["momentum_buffer"]
        )


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "ck.safetensors"
    tg.save({"a": np.zeros(3)}, path)
    tg.save({"a": np.ones(3)}, path)
    assert os.listdir(tmp_path) == ["ck.safetensors"]
    np.testing.assert_array_equal(tg.load(path)["a"], np.ones(3))
    # a state that cannot be saved raises before anything is written: the old file stays
    with pytest.raises(TypeError, match=r"tapegrad.save: model/opt is a object"):
        tg.save({"model": {"opt": object()}}, path)
    np.testing.assert_array_equal(tg.load(path)["a"], np.ones(3))
    assert os.listdir(tmp_path) == ["ck.safetensors"]


def test_bad_keys_are_refused(tmp_path):
    with pytest.raises(TypeError, match="key 1 under <root> is not a str"):
        tg.save({1: np.zeros(1), "a": 2}, tmp_path / "x")
    with pytest.raises(TypeError, match=r"key 1\.5 under <root> is not a str"):
        tg.save({1.5: np.zeros(1)}, tmp_path / "x")


def test_int_keys_round_trip(tmp_path):
    state = {"state": {0: {"step": 3, "buf": np.ones(2)}, 7: {}}, "names": {"0": 1}}
    tg.save(state, tmp_path / "x")
    got = tg.load(tmp_path / "x")
    assert list(got["state"]) == [0, 7] and got["state"][0]["step"] == 3
    np.testing.assert_array_equal(got["state"][0]["buf"], np.ones(2))
    assert got["names"] == {"0": 1}
    with pytest.raises(ValueError, match="holds '/'"):
        tg.save({"a/b": np.zeros(1)}, tmp_path / "x")


def test_truncated_file_names_the_tensor(tmp_path):
    path = tmp_path / "ck.safetensors"
    tg.save({"first": np.zeros(10), "second": np.ones(1000)}, path)
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(CheckpointError, match=r"tensor 'second' needs bytes .* \(truncated file\)"):
        tg.load(path)
    path.write_bytes(b"PK\x03\x04 this is a zip archive, not safetensors")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        tg.load(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        tg.load(tmp_path / "missing.safetensors")
