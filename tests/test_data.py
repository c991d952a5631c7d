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


def make_learnable_fake_mnist(directory, n_train, n_test):
    """Gzipped fake Fashion-MNIST a model can learn: dim noise (0-59) with a bright 8x4
    block (250) whose position, one of ten, is the label."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        imgs = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 5)
            imgs[i, 4 + 10 * r : 12 + 10 * r, 2 + 5 * col : 6 + 5 * col] = 250
        write_idx(f"{directory}/{prefix}-images-idx3-ubyte.gz", imgs, compress=True)
        write_idx(f"{directory}/{prefix}-labels-idx1-ubyte.gz", labels, compress=True)


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


# --- files that cost far more than their size, and malformed CIFAR batches ---------------


def _shared_list_bomb(depth: int) -> bytes:
    """Pickle opcodes for a list nested ``depth`` deep whose two entries are the same
    memoised list: 2**depth zeros when expanded, about 8 bytes per level in the file."""
    ops = b"K\x00q\x000"  # BININT1 0, BINPUT 0, POP
    for i in range(depth):
        # MARK, BINGET i, BINGET i, LIST, BINPUT i + 1, POP
        ops += b"(h" + bytes([i]) + b"h" + bytes([i]) + b"lq" + bytes([i + 1]) + b"0"
    return ops + b"h" + bytes([depth])  # BINGET depth: the outermost list


def _cifar_pickle(data_ops: bytes, label_ops: bytes = b"]K\x00a") -> bytes:
    """A protocol-3 pickle of {b"data": <data_ops>, b"labels": <label_ops>}."""
    return b"\x80\x03}(C\x04data" + data_ops + b"C\x06labels" + label_ops + b"u."


def _cheaply(fn, *args):
    """Run fn(*args); return (exception raised, seconds, peak traced bytes)."""
    import time
    import tracemalloc

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - returned for the caller to check
        err = e
    else:
        err = None
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return err, dt, peak


@pytest.mark.parametrize("where", ["data", "labels", "row", "key", "shape"])
def test_cifar_shared_reference_bombs_are_refused_cheaply(tmp_path, where):
    # 20 levels: a million elements if expanded, which the reader used to build in ~10 s
    # (a 32-level file of 300 bytes is 4 billion); refused now before anything is built
    bomb = _shared_list_bomb(20)
    if where == "data":
        raw = _cifar_pickle(bomb)
    elif where == "labels":
        raw = _cifar_pickle(b"C\x00", bomb)
    elif where == "row":  # one row of the right count whose element is the bomb
        raw = _cifar_pickle(b"]" + bomb + b"a")
    elif where == "key":  # a tuple dict key is hashed through everything it shares
        tup = bomb.replace(b"lq", b"tq")
        raw = b"\x80\x03}(" + tup + b"K\x00u."
    else:  # an ndarray whose shape is the bomb
        tup = bomb.replace(b"lq", b"tq")
        raw = (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\xf0cnumpy\nndarray\nq\xf1"
            b"K\x00\x85C\x01b\x87R(K\x01" + tup + b"cnumpy\ndtype\nX\x02\x00\x00\x00u1"
            b"\x89\x88\x87R\x89C\x00tb."
        )
    assert len(raw) < 400
    p = tmp_path / "data_batch_1"
    p.write_bytes(raw)
    err, dt, peak = _cheaply(data.read_cifar_batch, p)
    assert isinstance(err, ValueError), err
    assert str(p) in str(err)
    assert dt < 2.0, f"{dt:.1f} s to refuse a {len(raw)}-byte file"
    assert peak < 4 * 2**20, f"{peak / 2**20:.0f} MiB to refuse a {len(raw)}-byte file"


def _gzip_zero_bomb(path, header: bytes, zeros: int) -> None:
    comp = __import__("zlib").compressobj(9, 8, 31)  # wbits 31: a gzip stream
    with open(path, "wb") as f:
        f.write(comp.compress(header))
        chunk = bytes(2**20)
        for _ in range(zeros // len(chunk)):
            f.write(comp.compress(chunk))
        f.write(comp.flush())


def test_gzip_idx_that_inflates_past_its_header_is_refused_cheaply(tmp_path):
    # the header says 4 bytes; the stream inflates to 64 MiB of zeros (from ~64 KiB)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    _gzip_zero_bomb(p, struct.pack(">BBBBI", 0, 0, 8, 1, 4), 64 * 2**20)
    assert p.stat().st_size < 200_000
    err, dt, peak = _cheaply(data.read_idx, p)
    assert isinstance(err, ValueError) and str(p) in str(err), err
    assert "more than 4 payload bytes" in str(err)
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB to refuse a {p.stat().st_size}-byte file"
    assert dt < 2.0


def test_idx_header_announcing_too_much_is_refused_before_reading(tmp_path):
    # a 3-D header of 2**32 - 1 per side: refused on the header alone, gzipped or raw
    header = struct.pack(">BBBB3I", 0, 0, 8, 3, *(3 * [2**32 - 1]))
    p = tmp_path / "big.gz"
    _gzip_zero_bomb(p, header, 2**20)
    err, dt, peak = _cheaply(data.read_idx, p)
    assert isinstance(err, ValueError) and "over the budget" in str(err), err
    assert str(p) in str(err) and peak < 4 * 2**20
    raw = tmp_path / "big"
    raw.write_bytes(header + bytes(100))
    with pytest.raises(ValueError, match=r"holds 100 payload bytes, its header"):
        data.read_idx(raw)
    # the budget is a parameter: a legitimately well-compressed file can be allowed
    q = tmp_path / "zeros.gz"
    _gzip_zero_bomb(q, struct.pack(">BBBBI", 0, 0, 8, 1, 2**21), 2 * 2**20)
    with pytest.raises(ValueError, match="over the budget of 1000"):
        data.read_idx(q, max_bytes=1000)
    assert data.read_idx(q).shape == (2**21,)


def _cifar_file(tmp_path, data_, labels, name="data_batch_1"):
    p = tmp_path / name
    with open(p, "wb") as f:
        pickle.dump({b"data": data_, b"labels": labels}, f, protocol=2)
    return p


@pytest.mark.parametrize(
    "data_, labels, match",
    [
        (np.zeros((2, 3072), np.uint8), [0, -1], r"labels must lie in \[0, 9\], found -1"),
        (np.zeros((2, 3072), np.uint8), [0, 1000], r"labels must lie in \[0, 9\], found 1000"),
        (np.zeros((4, 3072), np.uint8), [[0], [1], [2], [3]], "flat list of ints"),
        (np.zeros((4, 3072), np.uint8), np.zeros((4, 1), np.int64), r"1-D.*\(4, 1\)"),
        (np.zeros((1, 3072), np.uint8), np.array([12]), r"labels must lie in \[0, 9\], found 12"),
        (np.full((1, 3072), 10**6, np.int64), [0], r"\[0, 255\], found 1000000"),
        (np.full((1, 3072), -1, np.int64), [0], r"\[0, 255\], found -1"),
        ([[300] * 3072], [0], r"\[0, 255\], found 300"),
        ([[0.5] * 3072], [0], "ints in \\[0, 255\\], 'data' holds a float"),
        ([[0] * 3071], [0], "row 0 must hold 3072"),
        ("pixels", [0], "'data' must be a uint8 array"),
        (np.zeros((2, 1536), np.uint8), [0], r"shape \(2, 1536\)"),
    ],
)
def test_cifar_batches_are_validated_naming_the_file(tmp_path, data_, labels, match):
    p = _cifar_file(tmp_path, data_, labels)
    with pytest.raises(ValueError, match=match) as e:
        data.read_cifar_batch(p)
    assert str(p) in str(e.value)


def test_cifar_batches_in_every_accepted_form(tmp_path):
    imgs = _cifar_images(2, 3)
    flat = imgs.reshape(2, 3072)
    forms = {
        "uint8": flat,
        "int64": flat.astype(np.int64),
        "flat_array": flat.reshape(-1),
        "bytes": flat.tobytes(),
        "rows": flat.tolist(),
        "flat_list": flat.reshape(-1).tolist(),
        "row_bytes": [r.tobytes() for r in flat],
    }
    for name, d in forms.items():
        for labels in ([3, 9], np.array([3, 9], np.int64)):
            x, y = data.read_cifar_batch(_cifar_file(tmp_path, d, labels, name))
            np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), imgs, err_msg=name)
            assert y.dtype == np.int64 and y.tolist() == [3, 9]


def test_public_names_import_from_the_packages_as_before():
    # the names of the single-module tapegrad.data and tapegrad.distributed, still there
    from tapegrad import data as d
    from tapegrad import distributed as dist

    old_data = "read_idx load_idx_dataset read_cifar_batch load_cifar10 write_cifar_batch"
    old_data += " load_digits resize_bilinear load_dataset DATASETS DATA_ROOT DEFAULT_DIRS"
    old_data += " DatasetNotFoundError TensorDataset DataLoader Compose Pad RandomCrop"
    old_data += " RandomHorizontalFlip Normalize"
    old_dist = "DistInfo init is_initialized get_rank get_world_size is_main_process barrier"
    old_dist += " all_reduce_mean broadcast_object rank_zero_only print0 save_checkpoint"
    old_dist += " DistributedSampler DataParallel GradientHook trainer_options"
    for mod, names in ((d, old_data), (dist, old_dist)):
        for name in names.split():
            assert hasattr(mod, name), f"{mod.__name__}.{name}"
        for name in mod.__all__:
            obj = getattr(mod, name)
            assert getattr(obj, "__doc__", None) or not callable(obj), name


@pytest.mark.parametrize("drop_last", [False, True])
def test_shard_indices_pad_or_drop_the_remainder(drop_last):
    order = np.array([5, 3, 0, 4, 1, 2, 6])
    shards = [data.shard_indices(order, r, 3, drop_last) for r in range(3)]
    if drop_last:
        assert [s.tolist() for s in shards] == [[5, 4], [3, 1], [0, 2]]
    else:  # padded from the start of the order: 6 items of 7 + 2 repeated
        assert [s.tolist() for s in shards] == [[5, 4, 6], [3, 1, 5], [0, 2, 3]]
    assert all(s.dtype == np.int64 for s in shards)
    perm = data.epoch_order(10, seed=1, epoch=2)
    np.testing.assert_array_equal(np.sort(perm), np.arange(10))
    np.testing.assert_array_equal(perm, data.epoch_order(10, seed=1, epoch=2))
