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
import os
import socket
import struct
import tempfile
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
        tensors[name] = np.ascontiguousarray(obj)
        return {"__tensor__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"tapegrad.save: key {k!r} under {path or '<root>'} is not a str")
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
    if isinstance(node, dict):
        if "__tensor__" in node:
            name = node["__tensor__"]
            if name not in tensors:
                raise CheckpointError(
                    f"tapegrad.load: {path}: metadata refers to tensor {name!r}, "
                    "which the file does not hold"
                )
            return tensors[name]
        if "__dict__" in node:
            return {k: _unflatten(v, tensors, path) for k, v in node["__dict__"].items()}
        if "__list__" in node:
            return [_unflatten(v, tensors, path) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors, path) for v in node["__tuple__"])
        raise CheckpointError(f"tapegrad.load: {path}: malformed metadata node {sorted(node)}")
    return node


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
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
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
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"tapegrad.load: {path} is not a safetensors file (header is not JSON: {e})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"tapegrad.load: {path} has a header that is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    start = 8 + n
    payload = len(raw) - start
    for name, e in header.items():
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= set(e):
            raise CheckpointError(f"tapegrad.load: {path}: tensor {name!r} has a malformed entry")
        dt = e["dtype"]
        if dt not in _DTYPE_SIZES:
            raise CheckpointError(
                f"tapegrad.load: {path}: tensor {name!r} has dtype {dt}, which NumPy cannot hold"
            )
        lo, hi = e["data_offsets"]
        need = int(np.prod(e["shape"], dtype=np.int64)) * _DTYPE_SIZES[dt]
        if hi - lo != need or lo < 0:
            raise CheckpointError(
                f"tapegrad.load: {path}: tensor {name!r} spans {hi - lo} bytes but shape "
                f"{e['shape']} of {dt} needs {need} (corrupted header)"
            )
        if hi > payload:
            raise CheckpointError(
                f"tapegrad.load: {path}: tensor {name!r} needs bytes {lo}..{hi} of the data "
                f"section but the file holds {payload} (truncated file)"
            )
    return header, metadata, start


def _verify_checksums(path: Path, raw: bytes, header: dict, metadata: dict, start: int) -> None:
    """Compare each tensor's bytes with the CRC-32 recorded by :func:`save` (if any)."""
    text = metadata.get("tapegrad.crc32")
    if text is None:
        return  # written elsewhere, or by an older tapegrad: nothing to compare
    try:
        sums = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"tapegrad.load: {path}: checksum table is damaged ({e})") from None
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


def load(path: str | os.PathLike) -> Any:
    """Read a checkpoint written by :func:`save` and return the nested state.

    A safetensors file written elsewhere (e.g. ``safetensors.torch.save_file`` of a
    state dict) has no tapegrad metadata: it loads as a flat ``{name: array}`` dict.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as _st_load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tapegrad.load: no checkpoint at {path}")
    raw = path.read_bytes()
    header, metadata, start = _read_header(path, raw)
    _verify_checksums(path, raw, header, metadata, start)
    try:
        tensors = _st_load(raw)
    except SafetensorError as e:
        raise CheckpointError(f"tapegrad.load: {path}: {e}") from None
    if metadata.get("format") != _FORMAT:
        return tensors
    try:
        tree = json.loads(metadata["tapegrad.tree"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"tapegrad.load: {path}: tapegrad metadata is damaged ({type(e).__name__}: {e})"
        ) from None
    return _unflatten(tree, tensors, path)


def metadata(path: str | os.PathLike) -> dict[str, str]:
    """The file's ``__metadata__`` strings (format, version, the structure tree)."""
    path = Path(path)
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
    try:
        return json.loads(raw[8:].decode("utf-8")).get("__metadata__", {}) or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise CheckpointError(f"tapegrad.load: {path}: header is not JSON ({e})") from None
