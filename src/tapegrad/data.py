"""Datasets, loaders and augmentation: IDX (MNIST, Fashion-MNIST), CIFAR-10, digits.

Nothing is ever downloaded: a dataset that is not on disk is an error naming the
directory looked in and how to get the files.

Images come out as float32 NCHW arrays scaled to [0, 1]; labels as int64. A
:class:`DataLoader` yields ``(images, labels)`` NumPy batches that the training loop wraps
in Tensors without copying.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# --- IDX ---------------------------------------------------------------------------

# the IDX type byte -> big-endian dtype of the payload
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# how much a gzipped IDX file may inflate by default: its header's payload may be at most
# this many times the compressed file (MNIST-style images and labels compress 2-5x) or
# IDX_MIN_BUDGET, whichever is larger; ``read_idx(..., max_bytes=)`` overrides it
IDX_GZIP_RATIO = 100
IDX_MIN_BUDGET = 256 * 2**20
_CHUNK = 2**20


def _read_upto(stream: Any, n: int) -> bytes:
    """Up to ``n`` bytes from ``stream``, fewer only at its end."""
    parts, got = [], 0
    while got < n:
        part = stream.read(min(n - got, _CHUNK))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_idx(path: str | os.PathLike, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or raw, into an array of its shape.

    The header is two zero bytes, a type byte, the number of dimensions, then one
    big-endian uint32 per dimension. The file is read as a stream and judged on its header
    before the payload is read: a raw file must hold exactly the payload its header
    announces; a gzipped one is inflated in chunks and refused as soon as it yields more
    than announced, so a small file that inflates to gigabytes costs a few bytes of memory.

    Parameters
    ----------
    path : str or os.PathLike
        The file; gzip is recognised by its magic bytes, whatever the file's name.
    max_bytes : int, optional
        The largest payload a gzipped file's header may announce. Default: the larger of
        ``IDX_GZIP_RATIO`` (100) times the compressed size and ``IDX_MIN_BUDGET`` (256 MiB).

    Returns
    -------
    numpy.ndarray
        The header's shape, in the header's dtype (native byte order).

    Raises
    ------
    ValueError
        Naming the file: not IDX, damaged gzip, a header whose payload is over budget, or
        a payload of a different size than the header announces.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"  # gzip magic: whatever the file is named
        f.seek(0)
        stream: Any = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        try:
            return _read_idx_stream(path, stream, size, compressed, max_bytes)
        except (OSError, EOFError, zlib.error) as e:
            if not compressed:
                raise
            raise ValueError(f"read_idx: {path} is a damaged gzip file ({e})") from None


def _read_idx_stream(
    path: Path, stream: Any, size: int, compressed: bool, max_bytes: int | None
) -> np.ndarray:
    head = _read_upto(stream, 4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
        raise ValueError(
            f"read_idx: {path} is not an IDX file (header bytes {head.hex() or 'empty'})"
        )
    dtype, ndim = _IDX_TYPES[head[2]], head[3]
    dims = _read_upto(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"read_idx: {path} ends inside its header ({4 + len(dims)} bytes)")
    shape = struct.unpack(f">{ndim}I", dims)
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    header = 4 + 4 * ndim
    if not compressed:
        if size - header != expected:
            raise ValueError(
                f"read_idx: {path} holds {size - header} payload bytes, its header "
                f"{shape} ({dtype}) needs {expected}"
            )
    else:
        budget = max(IDX_GZIP_RATIO * size, IDX_MIN_BUDGET) if max_bytes is None else max_bytes
        if expected > budget:
            raise ValueError(
                f"read_idx: {path} is a {size}-byte gzip file whose header {shape} ({dtype}) "
                f"announces {expected} payload bytes, over the budget of {budget} "
                f"(pass max_bytes= to read_idx to allow it)"
            )
    payload = _read_upto(stream, expected)
    if len(payload) != expected or stream.read(1):
        got = f"{len(payload)}" if len(payload) != expected else f"more than {expected}"
        raise ValueError(
            f"read_idx: {path} holds {got} payload bytes, its header {shape} ({dtype}) "
            f"needs {expected}"
        )
    arr = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


# --- datasets ----------------------------------------------------------------------

DATA_ROOT = Path("/usr/share/datasets")
DEFAULT_DIRS = {
    "fashion-mnist": DATA_ROOT / "fashion-mnist",
    "mnist": DATA_ROOT / "mnist",
    "cifar10": DATA_ROOT / "cifar10",
}
_HOW_TO_GET = {
    "fashion-mnist": "install it with `sudo apt-get install dataset-fashion-mnist`, or pass "
    "--data-dir pointing at a directory holding the four IDX files",
    "mnist": "put the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...) there, "
    "or pass --data-dir pointing at a directory that holds them",
    "cifar10": "unpack the CIFAR-10 python version (cifar-10-python.tar.gz, holding "
    "data_batch_1..5 and test_batch) there, or pass --data-dir pointing at it",
}
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where we looked; the message says how to get them."""


def _missing(name: str, directory: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name}: {what} not found in {directory}; {_HOW_TO_GET.get(name, '')}"
    )


def _find_idx(directory: Path, stem: str, name: str) -> Path:
    for cand in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz"):
        p = directory / cand
        if p.is_file():
            return p
    raise _missing(name, directory, f"{stem}[.gz]")


def load_idx_dataset(
    name: str = "fashion-mnist",
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64.

    ``limit`` keeps the first N images (cut before the float conversion).
    """
    if split not in _IDX_NAMES:
        raise ValueError(f"load_idx_dataset: split must be 'train' or 'test', got {split!r}")
    directory = Path(data_dir) if data_dir is not None else DEFAULT_DIRS[name]
    if not directory.is_dir():
        raise _missing(name, directory, "the directory")
    img_stem, lbl_stem = _IDX_NAMES[split]
    images = read_idx(_find_idx(directory, img_stem, name))
    labels = read_idx(_find_idx(directory, lbl_stem, name))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"load_idx_dataset: {name} {split} images {images.shape} and labels "
            f"{labels.shape} do not pair up"
        )
    images, labels = images[:limit], labels[:limit]
    x = images.astype(np.float32)[:, None]
    x *= 1.0 / 255.0
    return x, labels.astype(np.int64)


CIFAR_CLASSES = 10
_CIFAR_PIXELS = 3 * 32 * 32


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> images (N, 3, 32, 32) float32 in [0, 1], labels (N,).

    The batch is a pickled dict with ``data`` (N * 3072 pixel values in [0, 255]: a uint8
    array (N, 3072), raw bytes, an int64 array or a list of ints, flat or in rows of 3072)
    and ``labels`` (N ints in [0, 9]: a list or a 1-D integer array).

    Pickle is only read through :class:`_CifarUnpickler`, which resolves no real global
    (the few NumPy names an array pickle needs map to inert stand-ins that copy raw bytes)
    and accepts only plain strings, bytes and numbers as dict keys. Lists are then checked
    for shape, element type and range before any array is built from them, so a small
    file of lists that share references cannot make the reader build a huge array.

    Raises
    ------
    ValueError
        Naming the file and what is wrong: not a readable pickle, a refused global, a
        missing key, or pixel data or labels of the wrong type, shape or range.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        d = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("read_cifar_batch:"):  # a refusal from _CifarUnpickler
            raise ValueError(f"{e} (file {path})") from None
        raise ValueError(f"read_cifar_batch: {path} is not a readable CIFAR batch ({e})") from None
    except Exception as e:  # truncated or not a pickle at all
        raise ValueError(f"read_cifar_batch: {path} is not a readable CIFAR batch ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"read_cifar_batch: {path} holds a {type(d).__name__}, not a dict")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        keys = sorted(repr(k) for k in d)[:10]
        raise ValueError(f"read_cifar_batch: {path} lacks 'data' or 'labels' (has {keys})")
    labels = _cifar_labels(d["labels"], path)
    n = labels.shape[0]
    data = _cifar_pixels(d["data"], n, path)
    x = data.reshape(n, 3, 32, 32).astype(np.float32)
    x *= 1.0 / 255.0
    return x, labels


def _cifar_labels(labels: Any, path: Path) -> np.ndarray:
    """A batch's labels as int64 (N,), checked to be integers in [0, CIFAR_CLASSES)."""
    if isinstance(labels, _ArrayStub):
        arr = labels.array
        if arr.ndim != 1:
            raise ValueError(
                f"read_cifar_batch: {path}: 'labels' must be 1-D, got an array of shape {arr.shape}"
            )
        arr = arr.astype(np.int64)
    elif isinstance(labels, (list, tuple)):
        # a flat list holds at most one element per pickle opcode: its length is bounded
        # by the file; each element is checked before NumPy sees the list
        bad = next((v for v in labels if type(v) is not int), None)
        if bad is not None:
            raise ValueError(
                f"read_cifar_batch: {path}: 'labels' must be a flat list of ints, it holds "
                f"a {type(bad).__name__}"
            )
        bad = next((v for v in labels if not 0 <= v < CIFAR_CLASSES), None)
        if bad is not None:
            raise ValueError(
                f"read_cifar_batch: {path}: labels must lie in [0, {CIFAR_CLASSES - 1}], "
                f"found {bad}"
            )
        arr = np.array(labels, dtype=np.int64)
    else:
        raise ValueError(
            f"read_cifar_batch: {path}: 'labels' must be a list or a 1-D integer array, got "
            f"a {type(labels).__name__}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= CIFAR_CLASSES):
        bad = arr[(arr < 0) | (arr >= CIFAR_CLASSES)][0]
        raise ValueError(
            f"read_cifar_batch: {path}: labels must lie in [0, {CIFAR_CLASSES - 1}], found {bad}"
        )
    return arr.reshape(-1)


def _cifar_pixels(data: Any, n: int, path: Path) -> np.ndarray:
    """A batch's pixels as uint8 (n * 3072,), checked for size, type and range."""
    need = n * _CIFAR_PIXELS
    if isinstance(data, _ArrayStub):
        arr = data.array
        if arr.shape not in ((n, _CIFAR_PIXELS), (need,), (n, 3, 32, 32)):
            raise ValueError(
                f"read_cifar_batch: {path} has {arr.size} pixel bytes for {n} labels (an "
                f"array of shape {arr.shape}); CIFAR-10 needs 3072 per image, shape "
                f"({n}, 3072)"
            )
    elif isinstance(data, (bytes, bytearray)):
        arr = np.frombuffer(data, dtype=np.uint8)
    elif isinstance(data, (list, tuple)):
        arr = _pixel_list(data, n, path)
    else:
        raise ValueError(
            f"read_cifar_batch: {path}: 'data' must be a uint8 array, bytes or a list of "
            f"ints, got a {type(data).__name__}"
        )
    if arr.size != need:
        raise ValueError(
            f"read_cifar_batch: {path} has {arr.size} pixel bytes for {n} labels; CIFAR-10 "
            f"needs 3072 per image"
        )
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            bad = arr[(arr < 0) | (arr > 255)].reshape(-1)[0]
            raise ValueError(
                f"read_cifar_batch: {path}: pixel values must lie in [0, 255], found {bad}"
            )
        arr = arr.astype(np.uint8)
    return arr.reshape(-1)


def _pixel_list(data: list | tuple, n: int, path: Path) -> np.ndarray:
    """Pixels given as a list: flat (n * 3072 ints) or n rows of 3072 ints (or bytes).

    Lengths are checked level by level and every element's type is checked before NumPy
    converts anything, so the cost is bounded by n * 3072 whatever the list shares.
    """
    need = n * _CIFAR_PIXELS
    if len(data) == need:
        rows = [data]
    elif len(data) == n:
        rows = list(data)
        for i, row in enumerate(rows):
            if isinstance(row, (bytes, bytearray)) and len(row) == _CIFAR_PIXELS:
                rows[i] = list(row)
            elif not isinstance(row, (list, tuple)) or len(row) != _CIFAR_PIXELS:
                size = len(row) if isinstance(row, (list, tuple, bytes, bytearray)) else "-"
                raise ValueError(
                    f"read_cifar_batch: {path}: 'data' row {i} must hold 3072 pixel values, "
                    f"got a {type(row).__name__} of length {size}"
                )
    else:
        raise ValueError(
            f"read_cifar_batch: {path} has a 'data' list of {len(data)} entries for {n} "
            f"labels; CIFAR-10 needs {need} pixel values, or {n} rows of 3072"
        )
    for row in rows:
        bad = next((v for v in row if type(v) is not int), None)
        if bad is not None:
            raise ValueError(
                f"read_cifar_batch: {path}: pixel values must be ints in [0, 255], 'data' "
                f"holds a {type(bad).__name__}"
            )
        bad = next((v for v in row if not 0 <= v <= 255), None)
        if bad is not None:
            raise ValueError(
                f"read_cifar_batch: {path}: pixel values must lie in [0, 255], found {bad}"
            )
    return np.array(rows, dtype=np.uint8).reshape(-1)


class _ArrayStub:
    """Stands in for a NumPy array rebuilt from a pickle, without NumPy's own reducer."""

    def __init__(self) -> None:
        self.array = np.empty(0, np.uint8)

    def __setstate__(self, state: Any) -> None:
        # numpy's ndarray state: (version, shape, dtype, is_fortran, raw bytes)
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("read_cifar_batch: unexpected ndarray state")
        _, shape, dtype, fortran, payload = state
        if not (
            isinstance(shape, tuple)
            and len(shape) <= 4
            and all(type(s) is int and s >= 0 for s in shape)
        ):
            raise pickle.UnpicklingError(
                "read_cifar_batch: an array's shape must be a tuple of at most 4 sizes"
            )
        if not isinstance(dtype, _DtypeStub) or dtype.code not in ("u1", "|u1", "i8", "<i8"):
            raise pickle.UnpicklingError("read_cifar_batch: only uint8/int64 arrays are accepted")
        if not isinstance(payload, (bytes, bytearray)):
            raise pickle.UnpicklingError("read_cifar_batch: array payload is not raw bytes")
        dt = np.dtype(np.uint8) if dtype.code.endswith("u1") else np.dtype("<i8")
        if len(payload) != math.prod(shape) * dt.itemsize:
            raise pickle.UnpicklingError("read_cifar_batch: array payload size mismatch")
        arr = np.frombuffer(payload, dtype=dt)
        self.array = arr.reshape(shape, order="F" if fortran else "C")


class _DtypeStub:
    def __init__(self, code: Any = "u1", *_: Any) -> None:
        if isinstance(code, bytes):
            code = code.decode("latin1")
        if not isinstance(code, str) or len(code) > 8:
            raise pickle.UnpicklingError("read_cifar_batch: an array's dtype must be a short code")
        self.code = code

    def __setstate__(self, state: Any) -> None:
        pass


def _reconstruct(cls: Any, shape: Any, dtype: Any) -> _ArrayStub:
    return _ArrayStub()


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    # protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("read_cifar_batch: unexpected _codecs.encode call")
    return text.encode("latin1")


_PLAIN_KEYS = (str, bytes, int, float, bool, type(None))


def _check_keys(keys: Any) -> None:
    for k in keys:
        if not isinstance(k, _PLAIN_KEYS):
            # a tuple key is hashed through everything it holds, shared references
            # counted again each time: refused before it is hashed
            raise pickle.UnpicklingError(
                f"read_cifar_batch: refusing a dict key or set item of type {type(k).__name__}"
            )


def _guard(op: bytes, keys_of: Callable[[Any], Any]) -> tuple[int, Callable[[Any], None]]:
    load = pickle._Unpickler.dispatch[op[0]]

    def guarded(self: Any) -> None:
        _check_keys(keys_of(self))
        load(self)

    return op[0], guarded


def _after_mark(self: Any) -> list:
    return self.stack  # in the pure-Python unpickler, the items above the last mark


class _CifarUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Refuses every global except the few names a pickled uint8 array needs.

    Those are mapped to inert stand-ins defined here (they build a uint8 array from raw
    bytes), so no NumPy or other callable named by the file is ever invoked. Built on the
    pure-Python unpickler so that the opcodes which hash (dict keys, set items) can be
    checked first: only plain strings, bytes and numbers are hashed.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch.update(
        [
            _guard(pickle.SETITEM, lambda self: self.stack[-2:-1]),
            _guard(pickle.SETITEMS, lambda self: _after_mark(self)[::2]),
            _guard(pickle.DICT, lambda self: _after_mark(self)[::2]),
            _guard(pickle.ADDITEMS, _after_mark),
            _guard(pickle.FROZENSET, _after_mark),
        ]
    )

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _ArrayStub,
        ("numpy", "dtype"): _DtypeStub,
        ("_codecs", "encode"): _latin1_bytes,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"read_cifar_batch: refusing to load global {module}.{name} from a CIFAR batch"
            ) from None


def load_cifar10(
    split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the python batches: images (N, 3, 32, 32) float32, labels (N,) int64."""
    directory = Path(data_dir) if data_dir is not None else DEFAULT_DIRS["cifar10"]
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if split not in ("train", "test"):
        raise ValueError(f"load_cifar10: split must be 'train' or 'test', got {split!r}")
    if not directory.is_dir():
        raise _missing("cifar10", directory, "the directory")
    present = [directory / n for n in names if (directory / n).is_file()]
    if not present:
        raise _missing("cifar10", directory, " / ".join(names))
    parts = [read_cifar_batch(p) for p in present]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def write_cifar_batch(path: str | os.PathLike, images: np.ndarray, labels: Sequence[int]) -> None:
    """Write a batch in CIFAR-10's python format (a pickled dict, ``data`` uint8 (N, 3072))."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        raise ValueError(
            f"write_cifar_batch: images must be uint8 (N, 3, 32, 32), got "
            f"{images.dtype} {images.shape}"
        )
    d = {
        b"batch_label": b"written by tapegrad",
        b"labels": [int(v) for v in labels],
        b"data": images.reshape(len(images), 3072),
        b"filenames": [f"img{i}.png".encode() for i in range(len(images))],
    }
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def load_digits(split: str = "train", size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits upsampled to ``size`` x ``size`` (bilinear), in [0, 1].

    The offline fallback for a quick try: 1,797 images, the first 80% train, the rest test.
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError:
        raise DatasetNotFoundError(
            "digits: scikit-learn is not installed; `pip install scikit-learn` "
            "(or `pip install tapegrad[digits]`)"
        ) from None
    d = _sk_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    x = resize_bilinear(x, size)
    y = d.target.astype(np.int64)
    cut = int(0.8 * len(y))
    return (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])


def resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, h, w) -> (N, C, size, size), bilinear with aligned corners at pixel centres."""
    n, c, h, w = x.shape

    def weights(src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(size) + 0.5) * src / size - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    ylo, yhi, wy = weights(h)
    xlo, xhi, wx = weights(w)
    rows = x[:, :, ylo] * (1 - wy)[:, None] + x[:, :, yhi] * wy[:, None]
    out = rows[..., xlo] * (1 - wx) + rows[..., xhi] * wx
    return np.ascontiguousarray(out, dtype=np.float32)


DATASETS = ("fashion-mnist", "mnist", "cifar10", "digits")


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Arrays (images NCHW float32 in [0, 1], labels int64) of a named dataset split;
    ``limit`` keeps the first N."""
    if name in ("fashion-mnist", "mnist"):
        return load_idx_dataset(name, split, data_dir, limit)
    if name == "cifar10":
        x, y = load_cifar10(split, data_dir)
        return x[:limit], y[:limit]
    if name == "digits":
        x, y = load_digits(split)
        return x[:limit], y[:limit]
    raise ValueError(f"load_dataset: unknown dataset {name!r}; choose from {list(DATASETS)}")


# --- datasets and loading ----------------------------------------------------------


class TensorDataset:
    """Indexable pairs of arrays sharing the first dimension (like torch's TensorDataset).

    ``transform`` (optional) maps a batch of images (N, C, H, W) to a batch, applied by the
    DataLoader per batch with its own generator so augmentation is reproducible.
    """

    def __init__(self, *arrays: Any, transform: Callable | None = None) -> None:
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        self.arrays = [np.asarray(getattr(a, "data", a)) for a in arrays]
        n = self.arrays[0].shape[0]
        for i, a in enumerate(self.arrays):
            if a.shape[0] != n:
                raise ValueError(
                    f"TensorDataset: array {i} has {a.shape[0]} rows, array 0 has {n} "
                    f"(shapes {[x.shape for x in self.arrays]})"
                )
        self.transform = transform

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, idx: Any) -> tuple[np.ndarray, ...]:
        return tuple(a[idx] for a in self.arrays)


class DataLoader:
    """Batches of a :class:`TensorDataset` as NumPy arrays, optionally shuffled by seed.

    Each epoch's order comes from ``seed`` and the epoch number (``set_epoch``), so a
    resumed run sees the same batches as an uninterrupted one. ``drop_last`` drops the
    final short batch. With ``world_size > 1`` each rank takes every ``world_size``-th
    sample of the epoch's order from offset ``rank`` (all ranks get the same count), as
    data-parallel training needs.
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"DataLoader: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose shuffled order the next iteration uses (as after ``epoch``
        passes).
        """
        self.epoch = int(epoch)

    def _num_samples(self) -> int:
        return len(self.dataset) // self.world_size

    def __len__(self) -> int:
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        n = self._num_samples()
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.dataset)) if self.shuffle else None
        if self.world_size > 1:
            base = order if order is not None else np.arange(len(self.dataset))
            order = base[self.rank :: self.world_size][:n]
        transform = getattr(self.dataset, "transform", None)
        self.epoch += 1
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            # a contiguous slice is a view (no copy); shuffled batches gather once
            idx = slice(lo, hi) if order is None else order[lo:hi]
            batch = list(self.dataset[idx])
            if transform is not None:
                batch[0] = transform(batch[0], rng)
            yield tuple(batch)


# --- transforms (batched: (N, C, H, W) arrays in, arrays out) -----------------------


class Compose:
    """Apply batched transforms in order: ``Compose([Pad(2), RandomCrop(28)])``.

    Each transform takes ``(x, rng)`` with ``x`` an (N, C, H, W) array and returns an array.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        for t in self.transforms:
            x = t(x, rng)
        return x


class Pad:
    """Zero-pad H and W by ``padding`` on every side (28x28 -> 32x32 with padding=2)."""

    def __init__(self, padding: int) -> None:
        if padding < 0:
            raise ValueError(f"Pad: padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        p = self.padding
        return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


class RandomCrop:
    """Pad by ``padding`` (zeros), then crop a random ``size`` window per image."""

    def __init__(self, size: int, padding: int = 0) -> None:
        if size < 1 or padding < 0:
            raise ValueError(f"RandomCrop: need size >= 1, padding >= 0; got {size}, {padding}")
        self.size, self.padding = int(size), int(padding)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else np.random.default_rng()
        xp = Pad(self.padding)(x)
        n, _, h, w = xp.shape
        s = self.size
        if s > h or s > w:
            raise ValueError(f"RandomCrop: crop {s} larger than padded image {(h, w)}")
        ys = rng.integers(0, h - s + 1, size=n)
        xs = rng.integers(0, w - s + 1, size=n)
        # one gather through index arrays instead of a Python loop over images
        rows = ys[:, None] + np.arange(s)[None, :]  # (N, s)
        cols = xs[:, None] + np.arange(s)[None, :]
        ni = np.arange(n)[:, None, None, None]
        ci = np.arange(xp.shape[1])[None, :, None, None]
        return xp[ni, ci, rows[:, None, :, None], cols[:, None, None, :]]


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else np.random.default_rng()
        flip = rng.random(x.shape[0]) < self.p
        if not flip.any():
            return x
        out = x.copy()
        out[flip] = x[flip][..., ::-1]
        return out


class Normalize:
    """(x - mean[c]) / std[c] per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {list(std)}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if x.shape[1] != self.mean.shape[1] and self.mean.shape[1] != 1:
            raise ValueError(
                f"Normalize: {self.mean.shape[1]} channel statistics for input {x.shape}"
            )
        return ((x - self.mean) / self.std).astype(np.float32, copy=False)
