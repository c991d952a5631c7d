"""File formats: IDX (MNIST, Fashion-MNIST) and CIFAR-10's python batches.

Readers judge a file on its header and on a running size budget before building anything
large, and every error names the file. Arrays only: nothing here imports the framework.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


# --- CIFAR-10 python batches ---------------------------------------------------------

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
