"""Checkpoints in the safetensors format: ``tapegrad.save(state, path)`` / ``tapegrad.load(path)``.

``state`` is a nested structure of dicts (string keys), lists/tuples, arrays/Tensors,
numbers, strings, booleans and None -- e.g. ``{"model": model.state_dict(),
"optimizer": opt.state_dict(), "epoch": 3, "rng": {...}}``. Arrays become safetensors
tensors named by their path joined with ``/`` (``model/features.0.weight``,
``optimizer/state/0/momentum_buffer``); everything else is kept in the file's JSON
metadata (``tapegrad.tree``), with each array replaced by a reference to its tensor name.

The file is a plain safetensors file: ``safetensors.numpy.load_file`` and PyTorch users
read it directly. Writing goes to a temporary file in the same directory, is fsynced, then
renamed over the target (``os.replace``), so a crash never leaves a half-written
checkpoint. The temp file is named ``.NAME.HOST.PID.*.tmp``; a save removes the ones
left by killed saves of the same file on this host (their process no longer exists).
Loading never unpickles: the header is validated first (sizes, offsets, dtypes) so a
truncated or corrupted file gives an error that names the tensor and why.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import stat
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

_FORMAT = "tapegrad.checkpoint"
_VERSION = "1"
_SEP = "/"
# safetensors dtype names -> bytes per element (those NumPy can hold)
_DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_MAX_HEADER = 100 * 1024 * 1024
# what each node of the ``tapegrad.tree`` structure holds
_NODE_TYPES: dict[str, type | tuple[type, ...]] = {
    "__tensor__": str,
    "__dict__": dict,
    "__intdict__": dict,
    "__list__": list,
    "__tuple__": list,
}
_LAST = "last.safetensors"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: truncated, corrupted or not safetensors."""


def _flatten(obj: Any, path: str, tensors: dict[str, np.ndarray]) -> Any:
    """Replace every array in ``obj`` by ``{"__tensor__": name}``; collect the arrays."""
    data = getattr(obj, "data", None)
    if isinstance(data, np.ndarray) and not isinstance(obj, np.ndarray):
        obj = data  # a Tensor or Parameter: save its array
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"tapegrad.save: {path or '<root>'} has unsupported dtype {obj.dtype}")
        name = path or "tensor"
        # np.require, not np.ascontiguousarray: the latter turns a 0-d array into shape (1,)
        tensors[name] = np.require(obj, requirements="C")
        return {"__tensor__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if obj and all(isinstance(k, int) and not isinstance(k, bool) for k in obj):
            # integer keys (an optimizer's state by parameter index) round-trip as ints
            inner = _flatten({str(k): v for k, v in obj.items()}, path, tensors)
            return {"__intdict__": inner["__dict__"]}
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"tapegrad.save: key {k!r} under {path or '<root>'} is not a str "
                    "(a dict's keys are all str or all int)"
                )
            if _SEP in k:
                raise ValueError(f"tapegrad.save: key {k!r} under {path or '<root>'} holds '/'")
            out[k] = _flatten(v, f"{path}{_SEP}{k}" if path else k, tensors)
        return {"__dict__": out}
    if isinstance(obj, (list, tuple)):
        items = [
            _flatten(v, f"{path}{_SEP}{i}" if path else str(i), tensors) for i, v in enumerate(obj)
        ]
        return {"__list__": items} if isinstance(obj, list) else {"__tuple__": items}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"tapegrad.save: {path or '<root>'} is a {type(obj).__name__}; checkpoints hold "
        "dicts, lists, arrays/Tensors, numbers, strings and None"
    )


def _unflatten(node: Any, tensors: dict[str, np.ndarray], path: Path) -> Any:
    """Rebuild the structure :func:`_flatten` described, refusing any other shape of node."""
    if isinstance(node, list):
        raise CheckpointError(
            f"tapegrad.load: {path}: metadata field 'tapegrad.tree' holds a bare list"
        )
    if not isinstance(node, dict):
        return node
    (kind, value), *rest = node.items() if node else [(None, None)]
    if rest or not isinstance(value, _NODE_TYPES.get(kind, ())):
        raise CheckpointError(
            f"tapegrad.load: {path}: metadata field 'tapegrad.tree' has a malformed node "
            f"with keys {sorted(map(str, node))[:4]}"
        )
    if kind == "__tensor__":
        if value not in tensors:
            raise CheckpointError(
                f"tapegrad.load: {path}: metadata refers to tensor {value!r}, "
                "which the file does not hold"
            )
        return tensors[value]
    if kind == "__dict__":
        return {k: _unflatten(v, tensors, path) for k, v in value.items()}
    if kind == "__intdict__":
        if not all(k.lstrip("-").isdigit() for k in value):
            raise CheckpointError(
                f"tapegrad.load: {path}: metadata field 'tapegrad.tree' has a non-integer key "
                "in an integer-keyed dict"
            )
        return {int(k): _unflatten(v, tensors, path) for k, v in value.items()}
    items = [_unflatten(v, tensors, path) for v in value]
    return items if kind == "__list__" else tuple(items)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temp files of earlier saves of ``name`` whose process on this host is gone
    (a save killed mid-write); a live writer's file, or another host's, is left alone."""
    host = socket.gethostname()
    for tmp in directory.glob(f".{name}.{host}.*.tmp"):
        pid = tmp.name[len(f".{name}.{host}.") :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:
                pass  # removed by a concurrent save, or not ours to remove


def _create_temp(directory: Path, prefix: str) -> tuple[int, str]:
    """Create a new temp file ``PREFIX<random>.tmp`` with mode 0666 minus the umask.

    ``tempfile.mkstemp`` would make it 0600, and the rename keeps that mode: checkpoints
    get the permissions any new file of the user gets (0644 under umask 022).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(directory / f"{prefix}{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"tapegrad.save: no free temp file name in {directory}")


def save(state: Any, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``state`` to ``path`` (safetensors) atomically: temp file, fsync, rename."""
    from safetensors.numpy import save as _st_save

    tensors: dict[str, np.ndarray] = {}
    tree = _flatten(state, "", tensors)
    meta = dict(metadata or {})
    meta.update({"format": _FORMAT, "version": _VERSION, "tapegrad.tree": json.dumps(tree)})
    # a checksum per tensor: flipped bits in the data section are caught and named on load
    meta["tapegrad.crc32"] = json.dumps({k: zlib.crc32(v.tobytes()) for k, v in tensors.items()})
    blob = _st_save(tensors, metadata=meta)
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(directory, path.name)
    prefix = f".{path.name}.{socket.gethostname()}.{os.getpid()}."
    fd, tmp = _create_temp(directory, prefix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # make the rename itself durable
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _json(path: Path, text: bytes | str, what: str) -> Any:
    """``json.loads`` whose every failure (bad bytes, syntax, nesting too deep for the
    parser) is a :class:`CheckpointError` naming the file and ``what`` was parsed."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        if what == "header":
            raise CheckpointError(
                f"tapegrad.load: {path} is not a safetensors file (header is not JSON: {e})"
            ) from None
        raise CheckpointError(
            f"tapegrad.load: {path}: tapegrad metadata is damaged ({what} is not JSON: {e})"
        ) from None
    except RecursionError:
        raise CheckpointError(
            f"tapegrad.load: {path}: {what} is nested too deeply to be a checkpoint"
        ) from None


def _kind(value: Any) -> str:
    """A JSON value's type as a reader of the header would name it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _is_count(value: Any) -> bool:
    """A JSON non-negative integer (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(path: Path, name: str, e: Any, payload: int) -> None:
    """One tensor's header entry: field types first, then sizes against the data section."""
    where = f"tapegrad.load: {path}: tensor {name!r}"
    if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= set(e):
        raise CheckpointError(
            f"{where} has a malformed entry (needs an object with dtype, shape, data_offsets)"
        )
    dt, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
    if not isinstance(dt, str):
        raise CheckpointError(f"{where}: field 'dtype' is {_kind(dt)}, not a dtype name")
    if dt not in _DTYPE_SIZES:
        raise CheckpointError(f"{where} has dtype {dt}, which NumPy cannot hold")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise CheckpointError(
            f"{where}: field 'shape' is {shape!r:.80}, not a list of non-negative integers"
        )
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise CheckpointError(
            f"{where}: field 'data_offsets' is {offsets!r:.80}, not a list of two "
            "non-negative integers"
        )
    lo, hi = offsets
    need = math.prod(shape) * _DTYPE_SIZES[dt]  # Python ints: a dimension of 2**70 is no trap
    if hi - lo != need:
        raise CheckpointError(
            f"{where} spans {hi - lo} bytes but shape {shape} of {dt} needs {need} "
            "(corrupted header)"
        )
    if hi > payload:
        raise CheckpointError(
            f"{where} needs bytes {lo}..{hi} of the data section but the file holds "
            f"{payload} (truncated file)"
        )


def _check_metadata(path: Path, metadata: Any) -> dict[str, str]:
    """``__metadata__`` is absent, null or an object of strings (the safetensors format)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"tapegrad.load: {path}: header field '__metadata__' is {_kind(metadata)}, "
            "not an object of strings"
        )
    for k, v in metadata.items():
        if not isinstance(v, str):
            raise CheckpointError(
                f"tapegrad.load: {path}: header field '__metadata__' entry {k!r} is "
                f"{_kind(v)}, not a string"
            )
    return metadata


def _read_header(path: Path, raw: bytes) -> tuple[dict[str, Any], dict[str, str], int]:
    """Validate the safetensors header against the file; return (entries, metadata, start)."""
    if len(raw) < 8:
        raise CheckpointError(
            f"tapegrad.load: {path} is {len(raw)} bytes, too short for a safetensors header"
        )
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise CheckpointError(
            f"tapegrad.load: {path} is not a safetensors file or is truncated "
            f"(header claims {n} bytes, file has {len(raw)})"
        )
    header = _json(path, raw[8 : 8 + n], "header")
    if not isinstance(header, dict):
        raise CheckpointError(f"tapegrad.load: {path} has a header that is not a JSON object")
    metadata = _check_metadata(path, header.pop("__metadata__", None))
    start = 8 + n
    payload = len(raw) - start
    for name, e in header.items():
        _check_entry(path, name, e, payload)
    return header, metadata, start


def _verify_checksums(path: Path, raw: bytes, header: dict, metadata: dict, start: int) -> None:
    """Compare each tensor's bytes with the CRC-32 recorded by :func:`save` (if any)."""
    text = metadata.get("tapegrad.crc32")
    if text is None:
        return  # written elsewhere, or by an older tapegrad: nothing to compare
    sums = _json(path, text, "metadata field 'tapegrad.crc32'")
    if not isinstance(sums, dict):
        raise CheckpointError(
            f"tapegrad.load: {path}: metadata field 'tapegrad.crc32' is {_kind(sums)}, "
            "not an object"
        )
    view = memoryview(raw)
    for name, e in header.items():
        if name not in sums:
            raise CheckpointError(f"tapegrad.load: {path}: tensor {name!r} has no checksum")
        lo, hi = e["data_offsets"]
        if zlib.crc32(view[start + lo : start + hi]) != sums[name]:
            raise CheckpointError(
                f"tapegrad.load: {path}: tensor {name!r} fails its checksum: its "
                f"{hi - lo} data bytes are corrupted"
            )


def _check_readable_file(path: Path) -> None:
    """A regular file (after symlinks), or an error that says what ``path`` is instead."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise FileNotFoundError(
                f"tapegrad.load: no checkpoint at {path} (a symlink to the missing "
                f"{os.readlink(path)})"
            ) from None
        raise FileNotFoundError(f"tapegrad.load: no checkpoint at {path}") from None
    if stat.S_ISDIR(st.st_mode):
        hint = " (a run directory: its last.safetensors?)" if (path / _LAST).is_file() else ""
        raise IsADirectoryError(
            f"tapegrad.load: {path} is a directory, not a checkpoint file{hint}"
        )
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a character device"
            if stat.S_ISCHR(st.st_mode)
            else "a block device"
            if stat.S_ISBLK(st.st_mode)
            else "a pipe"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        target = f" (via symlink to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise CheckpointError(f"tapegrad.load: {path} is {kind}{target}, not a checkpoint file")


def load(path: str | os.PathLike) -> Any:
    """Read a checkpoint written by :func:`save` and return the nested state.

    A safetensors file written elsewhere (e.g. ``safetensors.torch.save_file`` of a
    state dict) has no tapegrad metadata: it loads as a flat ``{name: array}`` dict.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as _st_load

    path = Path(path)
    _check_readable_file(path)
    raw = path.read_bytes()
    header, metadata, start = _read_header(path, raw)
    _verify_checksums(path, raw, header, metadata, start)
    try:
        tensors = _st_load(raw)
    except SafetensorError as e:
        raise CheckpointError(f"tapegrad.load: {path}: {e}") from None
    if metadata.get("format") != _FORMAT:
        return tensors
    if "tapegrad.tree" not in metadata:
        raise CheckpointError(
            f"tapegrad.load: {path}: tapegrad metadata is damaged (no 'tapegrad.tree' field)"
        )
    tree = _json(path, metadata["tapegrad.tree"], "metadata field 'tapegrad.tree'")
    try:
        return _unflatten(tree, tensors, path)
    except RecursionError:
        raise CheckpointError(
            f"tapegrad.load: {path}: metadata field 'tapegrad.tree' is nested too deeply"
        ) from None


def metadata(path: str | os.PathLike) -> dict[str, str]:
    """The file's ``__metadata__`` strings (format, version, the structure tree).

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        No file at ``path``, or a directory.
    CheckpointError
        Not a regular file, or a header that is not safetensors.
    """
    path = Path(path)
    _check_readable_file(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"tapegrad.load: {path} is too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            raise CheckpointError(f"tapegrad.load: {path} is not a safetensors file")
        raw = head + f.read(n)
    if len(raw) < 8 + n:
        raise CheckpointError(f"tapegrad.load: {path} is truncated inside its header")
    header = _json(path, raw[8:], "header")
    if not isinstance(header, dict):
        raise CheckpointError(f"tapegrad.load: {path} has a header that is not a JSON object")
    return _check_metadata(path, header.get("__metadata__"))
