"""Data: IDX and CIFAR-10 readers (files written by the tests), loaders, transforms."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from tapegrad import data
from tapegrad.data import DataLoader, DatasetNotFoundError, TensorDataset

FASHION = "/usr/share/datasets/fashion-mnist"


def write_idx(path, arr, compress=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    arr = np.asarray(arr)
    code = codes[arr.dtype.type]
    raw = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if compress:
        raw = gzip.compress(raw)
    with open(path, "wb") as f:
        f.write(raw)


def make_fake_mnist(directory, n_train=20, n_test=10, compress=True):
    rng = np.random.default_rng(0)
    os.makedirs(directory, exist_ok=True)
    ext = ".gz" if compress else ""
    out = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(f"{directory}/{prefix}-images-idx3-ubyte{ext}", imgs, compress)
        write_idx(f"{directory}/{prefix}-labels-idx1-ubyte{ext}", labels, compress)
        out[split] = (imgs, labels)
    return out


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_round_trip(tmp_path, compress, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", arr, compress)
    got = data.read_idx(tmp_path / "a.idx")
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


def test_read_idx_rejects_damaged_files(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="is not an IDX file"):
        data.read_idx(p)
    write_idx(p, np.zeros((4, 5), np.uint8))
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"holds 17 payload bytes, its header \(4, 5\)"):
        data.read_idx(p)
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-6])
    with pytest.raises(ValueError, match="damaged gzip"):
        data.read_idx(p)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_loader_from_data_dir(tmp_path, compress):
    want = make_fake_mnist(tmp_path / "fm", compress=compress)
    x, y = data.load_dataset("fashion-mnist", "test", tmp_path / "fm")
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x[:, 0] * 255, want["test"][0], atol=1e-3)
    np.testing.assert_array_equal(y, want["test"][1])
    x, _ = data.load_dataset("mnist", "train", tmp_path / "fm")
    assert x.shape == (20, 1, 28, 28) and 0 <= x.min() and x.max() <= 1


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        data.load_dataset("fashion-mnist", "train", tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "sudo apt-get install dataset-fashion-mnist" in msg
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        data.load_dataset("fashion-mnist", "train", tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match=r"cifar10: .*data_batch_1"):
        data.load_dataset("cifar10", "train", tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.load_dataset("imagenet")


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    x, y = data.load_dataset("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert np.bincount(y).tolist() == [1000] * 10
    assert 0.27 < x.mean() < 0.30  # the well-known mean pixel of Fashion-MNIST test


def _cifar_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_batches_as_numpy_pickles_them(tmp_path, protocol):
    # the official files are pickled dicts whose b"data" is a uint8 ndarray (N, 3072)
    imgs = _cifar_images(6)
    for name, sl in (("data_batch_1", slice(0, 4)), ("data_batch_2", slice(4, 6))):
        with open(tmp_path / name, "wb") as f:
            d = {b"data": imgs[sl].reshape(-1, 3072), b"labels": list(range(sl.start, sl.stop))}
            pickle.dump(d, f, protocol=protocol)
    x, y = data.load_cifar10("train", tmp_path)
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x * 255, imgs, atol=1e-3)
    assert y.tolist() == list(range(6))


def test_cifar_writer_reader_and_subdirectory(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    imgs = _cifar_images(3, 1)
    data.write_cifar_batch(sub / "test_batch", imgs, [7, 8, 9])
    x, y = data.load_dataset("cifar10", "test", tmp_path)
    np.testing.assert_allclose(x * 255, imgs, atol=1e-3)
    assert y.tolist() == [7, 8, 9]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/tapegrad_cifar_pwned",))


def test_cifar_reader_refuses_globals(tmp_path):
    marker = "/tmp/tapegrad_cifar_pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, f)
    with pytest.raises(ValueError, match=r"refusing to load global (posix|os)\.system"):
        data.read_cifar_batch(tmp_path / "test_batch")
    assert not os.path.exists(marker)
    with open(tmp_path / "t2", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.float64), b"labels": [0]}, f)
    with pytest.raises(ValueError, match="only uint8/int64 arrays"):
        data.read_cifar_batch(tmp_path / "t2")
    with open(tmp_path / "t3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f)
    with pytest.raises(ValueError, match="6144 pixel bytes for 1 labels"):
        data.read_cifar_batch(tmp_path / "t3")
    (tmp_path / "t4").write_bytes(b"\x80\x02}q\x00(X")
    with pytest.raises(ValueError, match="not a readable CIFAR batch"):
        data.read_cifar_batch(tmp_path / "t4")


def test_digits_fallback_upsampled():
    pytest.importorskip("sklearn")
    x, y = data.load_dataset("digits", "train")
    assert x.shape[1:] == (1, 28, 28) and x.dtype == np.float32 and len(x) == len(y)
    assert 0 <= x.min() and x.max() <= 1


def test_resize_bilinear_keeps_constants_and_means():
    x = np.full((2, 1, 8, 8), 0.25, np.float32)
    np.testing.assert_allclose(data.resize_bilinear(x, 28), 0.25, rtol=1e-6)
    ramp = np.tile(np.arange(8, dtype=np.float32), (1, 1, 8, 1))
    up = data.resize_bilinear(ramp, 16)
    assert np.all(np.diff(up[0, 0, 0]) >= 0)  # monotone along the ramp


def test_tensor_dataset_checks_lengths():
    with pytest.raises(ValueError, match=r"array 1 has 3 rows, array 0 has 4"):
        TensorDataset(np.zeros((4, 2)), np.zeros(3))


def _collect(loader):
    return [b for b in loader]


def test_dataloader_batches_cover_the_data():
    ds = TensorDataset(np.arange(10)[:, None].astype(np.float32), np.arange(10))
    batches = _collect(DataLoader(ds, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert np.concatenate([b[1] for b in batches]).tolist() == list(range(10))
    assert len(DataLoader(ds, 4, drop_last=True)) == 2
    assert [len(b[1]) for b in DataLoader(ds, 4, drop_last=True)] == [4, 4]
    # unshuffled batches are views of the dataset: no copy
    assert np.shares_memory(batches[0][0], ds.arrays[0])


def test_dataloader_shuffle_is_seeded_per_epoch():
    ds = TensorDataset(np.arange(50), np.arange(50))
    a = DataLoader(ds, 8, shuffle=True, seed=3)
    e0 = np.concatenate([b[1] for b in a])
    e1 = np.concatenate([b[1] for b in a])
    assert sorted(e0.tolist()) == list(range(50)) and sorted(e1.tolist()) == list(range(50))
    assert e0.tolist() != e1.tolist() and e0.tolist() != list(range(50))
    b = DataLoader(ds, 8, shuffle=True, seed=3)
    b.set_epoch(1)  # a resumed run jumps straight to epoch 1 and sees the same order
    assert np.concatenate([x[1] for x in b]).tolist() == e1.tolist()
    c = DataLoader(ds, 8, shuffle=True, seed=4)
    assert np.concatenate([x[1] for x in c]).tolist() != e0.tolist()


def test_dataloader_shards_for_data_parallel():
    ds = TensorDataset(np.arange(11), np.arange(11))
    shards = [
        np.concatenate(
            [b[1] for b in DataLoader(ds, 2, shuffle=True, seed=1, rank=r, world_size=3)]
        )
        for r in range(3)
    ]
    assert all(len(s) == 3 for s in shards)
    assert len(set(np.concatenate(shards).tolist())) == 9  # disjoint
    with pytest.raises(ValueError, match="rank=3, world_size=3"):
        DataLoader(ds, 2, rank=3, world_size=3)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(ds, 0)


def test_transforms():
    rng = np.random.default_rng(0)
    x = rng.random((5, 1, 28, 28)).astype(np.float32)
    padded = data.Pad(2)(x)
    assert padded.shape == (5, 1, 32, 32) and padded[:, :, :2].sum() == 0
    np.testing.assert_array_equal(padded[:, :, 2:30, 2:30], x)

    crop = data.RandomCrop(28, padding=4)(x, np.random.default_rng(1))
    assert crop.shape == x.shape
    big = data.Pad(4)(x)
    for i in range(5):  # each crop is some 28x28 window of its padded image
        found = any(
            np.array_equal(crop[i], big[i, :, r : r + 28, c : c + 28])
            for r in range(9)
            for c in range(9)
        )
        assert found

    flipped = data.RandomHorizontalFlip(p=1.0)(x)
    np.testing.assert_array_equal(flipped, x[..., ::-1])
    np.testing.assert_array_equal(data.RandomHorizontalFlip(p=0.0)(x), x)

    norm = data.Normalize([0.5], [0.25])(x)
    np.testing.assert_allclose(norm, (x - 0.5) / 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="std must be positive"):
        data.Normalize([0.5], [0.0])
    with pytest.raises(ValueError, match="crop 40 larger than padded image"):
        data.RandomCrop(40)(x)


def test_loader_applies_transform_reproducibly():
    x = np.random.default_rng(0).random((16, 1, 8, 8)).astype(np.float32)
    ds = TensorDataset(x, np.arange(16), transform=data.Compose([data.RandomCrop(8, padding=2)]))
    a = _collect(DataLoader(ds, 4, shuffle=True, seed=2))
    b = _collect(DataLoader(ds, 4, shuffle=True, seed=2))
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(
        np.concatenate([t[0] for t in a]), x[np.concatenate([t[1] for t in a])]
    )
