"""Inference: fast eval forwards and models rebuilt from checkpoints.

``optimize(model)`` returns an :class:`InferenceModel`: one eval forward is traced per
input shape, batch norms are folded into the conv or linear layer before them, conv +
bias + ReLU run as one step writing a buffer allocated once, dropout is gone, and no tape
is recorded. ``load_model(path)`` rebuilds the zoo model a ``tapegrad train`` run saved
(a run directory or one of its ``.safetensors`` checkpoints) with its weights, in eval
mode.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, prange

from . import checkpoint, zoo
from .autograd import Context, no_grad
from .kernels import (
    _numba_cache,  # noqa: F401  (compiled cache: the user's cache folder)
    blas,
    threads,
)
from .kernels.blas import matmul
from .kernels.conv import Conv2dCall
from .kernels.conv_transpose import ConvTranspose2dCall
from .kernels.registry import resolve as resolve_variant
from .onnx import Record, trace
from .ops import activation, conv, conv_transpose, linalg, norm, shape
from .ops import elementwise as ew
from .tensor import Tensor

__all__ = ["InferenceModel", "build_plan", "fold_batch_norm", "load_model", "optimize"]


def load_model(path: str | os.PathLike, model: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The zoo model saved in a run directory or checkpoint, with its weights, in eval mode.

    Parameters
    ----------
    path : str or PathLike
        A run directory of ``tapegrad train`` (its ``last.safetensors`` is read) or a
        checkpoint file holding ``model`` weights and ``config``.
    model : str, optional
        The zoo model's name when the checkpoint does not say (a bare state dict).

    Returns
    -------
    (Module, dict)
        The model and ``info``: ``name``, ``in_channels``, ``input_size``, ``num_classes``,
        ``data`` (the dataset it was trained on, or None) and ``checkpoint`` (the file read).

    Raises
    ------
    FileNotFoundError
        No such file, or a run directory without ``last.safetensors``.
    ValueError
        The checkpoint names no model (and ``model`` is not given), names an unknown one,
        or holds weights of other shapes. ``tapegrad.checkpoint.CheckpointError`` (a
        ValueError) for a damaged file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "last.safetensors"
        if not p.exists():
            raise FileNotFoundError(f"load_model: run directory {path} has no last.safetensors")
    state = checkpoint.load(p)
    if not isinstance(state, dict):
        raise ValueError(f"load_model: {p} holds no state dict")
    weights = state.get("model", state)
    cfg = state.get("config") or {}
    name = model or cfg.get("model")
    if name is None:
        raise ValueError(f"load_model: {p} does not say which zoo model it holds; pass model=")
    if name not in zoo.MODELS:
        raise ValueError(f"load_model: unknown model {name!r}; choose from {zoo.available()}")
    kwargs = dict((cfg.get("extra") or {}).get("model_kwargs") or {})
    head = [k for k in weights if k.endswith(".weight")]
    if "num_classes" not in kwargs and zoo.task_of(name) == "classification" and head:
        kwargs["num_classes"] = int(np.shape(weights[head[-1]])[0])
    if not head:
        raise ValueError(f"load_model: {p} holds no layer weights (keys {sorted(weights)[:5]})")
    if "in_channels" not in kwargs:
        kwargs["in_channels"] = int(np.shape(weights[head[0]])[1])
    net = zoo.get_model(name, **kwargs)
    try:
        net.load_state_dict(weights)
    except (KeyError, ValueError) as e:
        raise ValueError(f"load_model: {p} does not fit {name} built with {kwargs}: {e}") from None
    net.eval()
    info = {
        "name": name,
        "in_channels": kwargs["in_channels"],
        "input_size": kwargs.get("input_size", zoo.DEFAULT_INPUT.get(name, 28)),
        "num_classes": kwargs.get("num_classes", 10),
        "data": cfg.get("data"),
        "checkpoint": str(p),
    }
    return net, info


# --- graph rewrites on a traced forward ------------------------------------------------------


def _consumers(records: list[Record], outputs: list[Tensor]) -> dict[int, int]:
    count: dict[int, int] = {}
    for r in records:
        for t in r.inputs():
            count[id(t)] = count.get(id(t), 0) + 1
    for t in outputs:
        count[id(t)] = count.get(id(t), 0) + 1
    return count


def _bn_affine(r: Record) -> tuple[np.ndarray, np.ndarray]:
    """Eval batch norm as y = x * scale + shift per channel (float64)."""
    p = r.params
    c = p["x"].shape[1]
    w = np.ones(c) if p["weight"] is None else p["weight"].data.astype(np.float64)
    b = np.zeros(c) if p["bias"] is None else p["bias"].data.astype(np.float64)
    mean = np.asarray(p["running_mean"], np.float64)
    if p["normalize_variance"]:
        invstd = 1.0 / np.sqrt(np.asarray(p["running_var"], np.float64) + float(p["eps"]))
    else:
        invstd = np.ones(c)
    scale = w * invstd
    return scale, b - mean * scale


def _with_params(r: Record, out: Tensor, **new: Any) -> Record:
    params = dict(r.params) | new
    kwargs = dict(r.kwargs or {})
    names = list(params)
    args = list(r.args)
    for k, v in new.items():
        i = names.index(k)
        if i < len(args):
            args[i] = v
        else:
            kwargs[k] = v
    return replace(r, params=params, out=out, args=tuple(args), kwargs=kwargs)


_FOLDABLE = (conv.Conv2d, conv.DepthwiseConv2d, conv_transpose.ConvTranspose2d, linalg.Linear)


def _folded_weight(src: Record, scale: np.ndarray) -> np.ndarray:
    """The weight of ``src`` with each output channel scaled (float64)."""
    w = src.params["w"].data.astype(np.float64)
    if src.fn is conv_transpose.ConvTranspose2d:
        # (C_in, C_out / groups, kh, kw): output channel g * C_out/groups + j is column j
        # of the rows of group g
        g = int(src.params["groups"])
        cin, og = w.shape[:2]
        s = scale.reshape(g, 1, og, *(1,) * (w.ndim - 2))
        return (w.reshape(g, cin // g, og, *w.shape[2:]) * s).reshape(w.shape)
    return w * scale.reshape((-1,) + (1,) * (w.ndim - 1))


def _channel_view(r: Record | None, x: Tensor) -> bool:
    """``r`` is a reshape that only adds or drops unit axes after the channel axis (how
    Conv1d and ConvTranspose1d run their 2-D ops): (N, C, 1, L) <-> (N, C, L)."""
    if r is None or r.fn is not shape.Reshape:
        return False
    a = r.params["a"]
    return a.shape[:2] == x.shape[:2] and [d for d in a.shape[2:] if d != 1] == [
        d for d in x.shape[2:] if d != 1
    ]


def fold_batch_norm(records: list[Record], outputs: list[Tensor]) -> list[Record]:
    """Records with every eval batch norm folded into the conv or linear record before it.

    A batch norm folds when its input is the output of a ``conv2d`` (any groups), a
    ``conv_transpose2d`` (any groups) or a ``linear`` on (N, F) input, used by nothing
    else; or the (N, C, L) view of such a conv's (N, C, 1, L) output (``Conv1d`` and
    ``ConvTranspose1d``), used once. The weight is scaled per output channel and the bias
    becomes ``b * scale + shift`` (computed in float64). The folded record (or the view
    after it) takes over the batch norm's output tensor, so later records are unchanged.
    """
    uses = _consumers(records, outputs)
    producer = {id(r.out): i for i, r in enumerate(records)}
    out = list(records)
    drop: set[int] = set()
    for i, r in enumerate(records):
        if r.fn is not norm.BatchNorm or r.params["training"]:
            continue
        x = r.params["x"]
        j = producer.get(id(x))
        if j is None or uses.get(id(x), 0) != 1:
            continue
        view = None
        if _channel_view(out[j], x):
            a = out[j].params["a"]
            k = producer.get(id(a))
            if k is None or uses.get(id(a), 0) != 1:
                continue
            view, j = j, k
        src = out[j]
        if src.fn not in _FOLDABLE or (src.fn is linalg.Linear and src.params["x"].ndim != 2):
            continue
        w, b = src.params["w"], src.params["b"]
        scale, shift = _bn_affine(r)
        w2 = Tensor(_folded_weight(src, scale).astype(w.dtype))
        b0 = np.zeros(len(scale)) if b is None else b.data.astype(np.float64)
        b2 = Tensor((b0 * scale + shift).astype(w.dtype))
        w2.name, b2.name = "folded_weight", "folded_bias"
        if view is None:
            out[j] = _with_params(src, r.out, w=w2, b=b2)
        else:
            out[j] = _with_params(src, src.out, w=w2, b=b2)
            out[view] = replace(out[view], out=r.out)
        drop.add(i)
    return [r for i, r in enumerate(out) if i not in drop]


# --- fused kernels (a pass over a conv's or linear's output) --------------------------------

# Below this many elements an epilogue runs on the calling thread: a parallel region's
# start-up costs more than the pass over a small layer's output.
_PARALLEL_ELEMS = 1 << 16


@njit(cache=True)
def _bias_act(y, b, relu):  # pragma: no cover - compiled
    n, c, p = y.shape
    for i in range(n * c):
        bi, ch = i // c, i % c
        bv = b[ch]
        row = y[bi, ch]
        for k in range(p):
            v = row[k] + bv
            row[k] = 0.0 if relu and v < 0 else v  # NaN and -0.0 pass, as in F.relu


@njit(parallel=True, cache=True)
def _bias_act_par(y, b, relu):  # pragma: no cover - compiled
    n, c, p = y.shape
    for i in prange(n * c):
        bi, ch = i // c, i % c
        bv = b[ch]
        row = y[bi, ch]
        for k in range(p):
            v = row[k] + bv
            row[k] = 0.0 if relu and v < 0 else v  # NaN and -0.0 pass, as in F.relu


@njit(cache=True)
def _gather_bias_act(src, b, relu, y):  # pragma: no cover - compiled
    # src (C, N, P) -> y (N, C, P) with bias and ReLU: the GEMM's layout transposed in
    # the same pass
    c, n, p = src.shape
    for i in range(n * c):
        bi, ch = i // c, i % c
        bv = b[ch]
        s, row = src[ch, bi], y[bi, ch]
        for k in range(p):
            v = s[k] + bv
            row[k] = 0.0 if relu and v < 0 else v  # NaN and -0.0 pass, as in F.relu


@njit(parallel=True, cache=True)
def _gather_bias_act_par(src, b, relu, y):  # pragma: no cover - compiled
    c, n, p = src.shape
    for i in prange(n * c):
        bi, ch = i // c, i % c
        bv = b[ch]
        s, row = src[ch, bi], y[bi, ch]
        for k in range(p):
            v = s[k] + bv
            row[k] = 0.0 if relu and v < 0 else v  # NaN and -0.0 pass, as in F.relu


@njit(cache=True)
def _affine_act(x, scale, shift, relu, y):  # pragma: no cover - compiled
    n, c, p = x.shape
    for i in range(n * c):
        bi, ch = i // c, i % c
        a, s = scale[ch], shift[ch]
        src, row = x[bi, ch], y[bi, ch]
        for k in range(p):
            v = src[k] * a + s
            row[k] = 0.0 if relu and v < 0 else v  # NaN and -0.0 pass, as in F.relu


@njit(cache=True)
def _act_into(src, dst, act):  # pragma: no cover - compiled
    # dst = act(src) over flat arrays (dst may be src): 1 ReLU, 2 sigmoid
    for k in range(src.size):
        v = src[k]
        if act == 1:
            dst[k] = 0.0 if v < 0 else v  # NaN and -0.0 pass, as in F.relu
        elif act == 2:
            e = np.exp(-abs(v))  # of a non-positive number only: no overflow
            dst[k] = 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)
        else:
            dst[k] = v


def _relu_into(src: np.ndarray, dst: np.ndarray) -> None:
    """dst = relu(src) over flat arrays (dst may be src); -0.0 and NaN pass as in F.relu."""
    if src.dtype in (np.float32, np.float64):
        _act_into(src, dst, 1)
    else:
        if dst is not src:
            np.copyto(dst, src)
        np.copyto(dst, 0, where=src < 0)


@njit(cache=True)
def _fold_bias_act(cols, b, y, h, w, kh, kw, sh, sw, ph, pw, dh, dw, act):  # pragma: no cover
    # transposed convolution's fold: cols (O*kh*kw, N*H*W) = w.reshape(C, -1).T @ x as
    # (C, N*H*W); y (N, O, Ho, Wo) = bias + each tap's column added at its output pixels,
    # then the activation (0 none, 1 ReLU, 2 sigmoid), one output plane at a time
    n, o, ho, wo = y.shape
    plane = h * w
    for p in range(n * o):
        bi, oc = p // o, p % o
        yp = y[bi, oc]
        bv = b[oc]
        for r in range(ho):
            for q in range(wo):
                yp[r, q] = bv
        for i in range(kh):
            for j in range(kw):
                src = cols[(oc * kh + i) * kw + j, bi * plane : (bi + 1) * plane]
                off = j * dw - pw  # output column of input column iw: iw * sw + off
                lo = max(0, -((off) // sw))  # first iw with iw * sw + off >= 0
                hi = min(w, (wo - 1 - off) // sw + 1)  # past the last inside
                for ih in range(h):
                    oy = ih * sh - ph + i * dh
                    if oy < 0 or oy >= ho:
                        continue
                    row = yp[oy]
                    for iw in range(lo, hi):
                        row[iw * sw + off] += src[ih * w + iw]
        if act != 0:
            flat = yp.reshape(ho * wo)
            _act_into(flat, flat, act)


@njit(cache=True)
def _im2col_serial(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):  # pragma: no cover
    # the unfold of a small layer on the calling thread (no parallel region to start)
    n, c, h, w = x.shape
    plane = ho * wo
    for row in range(c * kh * kw):
        ch = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        for bi in range(n):
            for oh in range(ho):
                ih = oh * sh - ph + i * dh
                base = bi * plane + oh * wo
                if ih < 0 or ih >= h:
                    for k in range(wo):
                        cols[row, base + k] = 0.0
                    continue
                for ow in range(wo):
                    iw = ow * sw - pw + j * dw
                    cols[row, base + ow] = x[bi, ch, ih, iw] if 0 <= iw < w else 0.0


@njit(cache=True)
def _depthwise_serial(x, w, b, y, relu, sh, sw, ph, pw, dh, dw):  # pragma: no cover
    # depthwise conv + bias (+ ReLU) of a small layer on the calling thread; each output
    # sums its taps in the order of the library's direct kernels (bias, then row by row)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = y.shape[2], y.shape[3]
    m = o // c
    for p in range(n * o):
        bi = p // o
        oc = p % o
        ic = oc // m
        for oh in range(ho):
            row = y[bi, oc, oh]
            for ow in range(wo):
                row[ow] = b[oc]
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= h:
                    continue
                xrow = x[bi, ic, ih]
                for j in range(kw):
                    wv = w[oc, 0, i, j]
                    off = j * dw - pw
                    for ow in range(wo):
                        iw = ow * sw + off
                        if 0 <= iw < wd:
                            row[ow] += wv * xrow[iw]
            if relu:
                for ow in range(wo):
                    v = row[ow]
                    row[ow] = 0.0 if v < 0 else v  # NaN and -0.0 pass, as in F.relu


# A conv or linear step below this many multiply-adds runs on the calling thread: its
# unfold, its GEMM on one BLAS thread and its epilogue. Small layers gain nothing from a
# parallel region (its start and its wait for a second thread cost more than the work);
# larger ones (VGG-small's 32- and 64-channel 3x3 convs at batch 1, every conv layer at
# batch 64) split their unfold and GEMM over every thread. On a machine busy with other
# work a parallel region waits for a descheduled thread: ``optimize(serial_macs=...)``
# with a large value keeps the whole forward on one thread there.
SERIAL_MACS = 4_000_000


try:
    from .kernels import cblas as _cblas
except ImportError:  # pragma: no cover - NumPy's BLAS not found
    _cblas = None


def _serial_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` on one BLAS thread."""
    n = threads.get_num_threads()
    if n == 1:
        return np.matmul(a, b, out=out)
    if _cblas is not None and _cblas.gemm_address(a.dtype) is not None:
        with _cblas.single_threaded():  # NumPy's own BLAS, the library np.matmul calls
            return np.matmul(a, b, out=out)
    return blas.one_thread_matmul(a, b, out, n)


def _pick(serial: Callable, parallel: Callable, size: int) -> Callable:
    return parallel if size >= _PARALLEL_ELEMS else serial


def _im2col() -> Callable:
    try:
        from .kernels.conv import im2col_cy

        return im2col_cy.im2col
    except ImportError:  # Cython kernels not built
        from .kernels.conv import im2col_numba

        return im2col_numba.im2col


# the Cython unfold runs on the calling thread below this many column elements (its
# OpenMP grain, kernels/_common.pxi)
_CY_SERIAL_UNFOLD = 1 << 21


def _im2col_cython() -> Callable | None:
    try:
        from .kernels.conv import im2col_cy

        return im2col_cy.im2col
    except ImportError:  # Cython kernels not built
        return None


# --- the plan: one forward's steps over preallocated buffers ---------------------------------

_ALIASING = (shape.Reshape, shape.Permute, shape.GetItem)
# the activation a step runs on its output: 0 none, 1 ReLU, 2 sigmoid
_ACT_NAMES = ("", " + relu", " + sigmoid")


class _Plan:
    """The steps of one input shape: each reads and writes slots of ``vals``."""

    def __init__(self, serial_macs: int | None = None) -> None:
        self.serial_macs = SERIAL_MACS if serial_macs is None else int(serial_macs)
        self.threaded = False  # some step runs on every thread
        self.base_threaded = False  # some step other than the tuned ones does
        self.steps: list[Callable[[list], None]] = []
        self.vals: list[Any] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.kinds: list[str] = []
        self.choices: dict[int, _Choice] = {}  # step index -> a conv step's candidates

    def slot(self, value: Any = None) -> int:
        self.vals.append(value)
        return len(self.vals) - 1

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        vals = self.vals
        for s, a in zip(self.inputs, arrays):
            vals[s] = a
        for step in self.steps:
            step(vals)
        return [np.array(vals[s], copy=True) for s in self.outputs]

    @property
    def kernels(self) -> dict[int, str]:
        """Step index -> the kernel each conv step runs (a variant's name, ``gemm`` for the
        plan's own unfold + GEMM, ``depthwise-serial`` for its one-thread depthwise loop)."""
        return {i: c.name for i, c in self.choices.items()}

    def tune(self, arrays: list[np.ndarray], rounds: int = 5) -> None:
        """Each conv step with several candidates takes its fastest: for one step after
        another, alternated whole runs of the plan with each candidate in turn, that step
        timed; medians; the first candidate (the family's pick or the plan's GEMM) is kept
        unless another takes at most ``TUNE_MARGIN`` of its time. Decided in the order of
        the steps, so later steps are timed after the earlier ones' choices."""
        import time

        tuned = [c for c in self.choices.values() if len(c.cands) > 1]
        if not tuned:
            return
        self.run(arrays)
        t0 = time.perf_counter()
        self.run(arrays)
        if time.perf_counter() - t0 > TUNE_SECONDS:
            rounds = 2
        for choice in tuned:
            times: list[list[float]] = [[] for _ in choice.cands]
            choice.timing = True
            try:
                for i in range(len(choice.cands)):  # warm each
                    choice.index = i
                    self.run(arrays)
                for _ in range(rounds):
                    for i, t in enumerate(times):
                        choice.index = i
                        self.run(arrays)
                        t.append(choice.last)
            finally:
                choice.timing = False
            med = [float(np.median(t)) for t in times]
            best = int(np.argmin(med))
            choice.index = best if med[best] <= TUNE_MARGIN * med[0] else 0
        self.threaded = self.base_threaded or any(c.threaded for c in self.choices.values())


# --- convolution steps: the conv2d family's variants, prepared once per plan ----------------

# Winograd's tile buffers: each of its matrices starts this many elements past the last
# (at least the family's own padding between matrices; the buffers are only larger)
_WINO_PAD = 256
# a batch-1 step whose slowest candidate takes longer than this is raced on fewer runs
_STEP_RACE_SECONDS = 0.005


def _winograd_kernel(
    x_shape: tuple, w: np.ndarray, b: np.ndarray, padding: tuple, nt: int, f4: bool
) -> Callable[[np.ndarray, np.ndarray], bool] | None:
    """winograd-cython's F(2x2, 3x3) (or F(4x4, 3x3)) forward of a 3x3 stride-1 call with
    its weights transformed once: ``kernel(x, y)`` writes y = conv(x) + b and says whether
    x was finite (False: y is not the convolution; the caller runs another kernel). The
    tiles are split into at least ``nt`` blocks so one image runs on ``nt`` threads. None
    when the kernels are not built or the weights are not finite."""
    try:
        from .kernels import cblas
        from .kernels.conv import winograd_cy as wg
    except ImportError:  # Cython kernels not built
        return None
    gemm = cblas.gemm_address(w.dtype)
    n, c, h, wd = x_shape
    o = w.shape[0]
    ph, pw = (int(p) for p in padding)
    ho, wo = h + 2 * ph - 2, wd + 2 * pw - 2
    if gemm is None or min(n, c, o, ho, wo) <= 0 or not np.isfinite(w).all():
        return None
    m, k = (4, 36) if f4 else (2, 16)
    th, tw = -(-ho // m), -(-wo // m)
    tiles = n * th * tw
    block = wg._block_tiles(tiles, c, o, w.itemsize, k, 1 if f4 else wg._F2_BLOCK_SHARE)
    if nt > 1:
        block = max(8, min(block, -(-tiles // nt)))
    nt = max(1, min(nt, -(-tiles // block)))
    u = wg._weight_transform4(w) if f4 else wg._weight_transform(w)
    vbuf = np.zeros((nt, k * (c * block + _WINO_PAD)), w.dtype)
    mbuf = np.zeros((nt, k * (o * block + _WINO_PAD)), w.dtype)
    rows = 48 * (tw + 1) + 4 * tw if f4 else 8 * (tw + 1) + 2 * tw
    rowbuf = np.zeros((nt, rows), w.dtype)
    flags = np.zeros(nt, w.dtype)
    run = wg.winograd4_threads if f4 else wg.winograd_threads

    def kernel(x: np.ndarray, y: np.ndarray) -> bool:
        flags[:] = 0
        with cblas.single_threaded():
            run(x, u, b, True, y, vbuf, mbuf, rowbuf, flags, ph, pw, block, gemm, nt)
        return bool(np.isfinite(flags.sum()))

    return kernel


def _relu_pass(y: np.ndarray) -> Callable[[np.ndarray], None]:
    """An in-place ReLU over arrays of y's shape: on the calling thread for small ones,
    the fused family's bias_relu (tapegrad's OpenMP team) for large float32/float64 ones.
    -0.0 and NaN pass, as in F.relu."""
    if y.size >= _PARALLEL_ELEMS and y.dtype in (np.float32, np.float64) and y.ndim >= 2:
        from .kernels.fused import BiasReluCall

        mod = resolve_variant("bias_relu", BiasReluCall.of(y, None))

        def relu(a: np.ndarray) -> None:
            mod.bias_relu_forward(a, None)

        return relu

    def relu_serial(a: np.ndarray) -> None:
        flat = a.reshape(-1)
        _relu_into(flat, flat)

    return relu_serial


def _conv_step(plan: _Plan, r: Record, xs: int, ys: int, relu: bool) -> Callable:
    p = r.params
    x, w = p["x"], np.ascontiguousarray(p["w"].data)
    b = p["b"].data if p["b"] is not None else np.zeros(w.shape[0], w.dtype)
    b = np.ascontiguousarray(b, dtype=x.dtype)
    stride, padding, dilation, groups = p["stride"], p["padding"], p["dilation"], p["groups"]
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    y = np.empty(r.out.shape, x.dtype)
    ho, wo = y.shape[2:]
    npix = ho * wo
    plan.vals[ys] = y
    y3 = y.reshape(n, o, npix)
    small = n * o * npix * cg * kh * kw < plan.serial_macs  # see SERIAL_MACS
    nt = 1 if small else threads.get_num_threads()
    mm = _serial_matmul if small else matmul
    epi = _bias_act if small else _pick(_bias_act, _bias_act_par, y.size)
    act = _relu_pass(y) if relu else None
    args = (*stride, *padding, *dilation)
    floats = x.dtype in (np.float32, np.float64) and w.dtype == x.dtype
    label = "conv + bias" + (" + relu" if relu else "")
    # candidates (name, run, threaded): run(x) returns the output (y or a fresh array)
    cands: list[tuple[str, Callable[[np.ndarray], np.ndarray], bool]] = []

    def family(op: str, call: Any, name: str | None = None, threaded: bool = not small) -> None:
        """The family's variant ``name`` (auto's pick when None) through its record."""
        from .kernels import registry

        try:
            mod = registry.get(op, name) if name else resolve_variant(op, call, None)
        except (KeyError, ImportError, ValueError):
            return
        vname = name or registry.resolved_name(op, call)

        def run(xa: np.ndarray) -> np.ndarray:
            out = call.forward(mod, xa, w, b)
            if act is not None:
                act(out)
            return out

        cands.append((vname, run, threaded))

    if r.fn is conv.DepthwiseConv2d:
        from .kernels.depthwise import DepthwiseConv2dCall

        label = "depthwise " + label
        call = DepthwiseConv2dCall.of(x, w, stride, padding, dilation, groups)
        family("depthwise_conv2d", call)
        if n == 1 or small:

            def dw_serial(xa: np.ndarray) -> np.ndarray:
                _depthwise_serial(xa, w, b, y, relu, *args)
                return y

            cands.append(("depthwise-serial", dw_serial, False))
        return _conv_choice(plan, cands, x, xs, ys, label, n == 1)

    call = Conv2dCall.of(x, w, stride, padding, dilation, groups)
    pointwise = kh == kw == 1 and tuple(stride) == (1, 1) and not any(padding) and groups == 1
    if pointwise:
        label = "pointwise " + label
    if n > 1 and not small:
        # a batch: the variant auto picks (its drivers give each thread whole images and
        # one-thread GEMMs); Winograd's with its weights transformed once
        from .kernels import registry

        if registry.resolved_name("conv2d", call) == "winograd-cython" and floats:
            from .kernels.conv import winograd_cy as wg

            kernel = _winograd_kernel(x.shape, w, b, padding, nt, wg._uses_f4(c, o, ho, wo))
            if kernel is not None:
                cands.append(_winograd_run("winograd-cython", kernel, call, w, b, y, act, True))
        if not cands:
            family("conv2d", call)
        return _conv_choice(plan, cands, x, xs, ys, label, False)

    w2 = w.reshape(o, cg * kh * kw)
    if pointwise:

        def gemm_1x1(xa: np.ndarray) -> np.ndarray:
            x3 = xa.reshape(n, c, h * wd)
            for i in range(n):  # one 2-D GEMM per image: a stacked matmul runs far slower
                mm(w2, x3[i], out=y3[i])
            epi(y3, b, relu)
            return y

        cands.append(("gemm", gemm_1x1, not small))
    else:
        # the unfold stays on the calling thread and only the GEMM is threaded (in BLAS),
        # so a single thread pool is awake during the step; with a threaded unfold the
        # OpenMP team still spins while the BLAS threads need the cores
        im2col = _im2col_serial if small or n == 1 else _im2col()
        if im2col is _im2col_serial and c * kh * kw * n * npix < _CY_SERIAL_UNFOLD:
            im2col = _im2col_cython() or im2col  # serial below its grain, row copies
        cols = np.empty((c * kh * kw, n * npix), x.dtype)
        og, k = o // groups, cg * kh * kw
        geom = (kh, kw, *stride, *padding, *dilation, ho, wo)

        def gemm(out2: np.ndarray) -> None:
            for g in range(groups):
                mm(
                    w2[g * og : (g + 1) * og],
                    cols[g * k : (g + 1) * k],
                    out=out2[g * og : (g + 1) * og],
                )

        if n == 1:
            y2 = y.reshape(o, npix)

            def im2col_gemm(xa: np.ndarray) -> np.ndarray:
                im2col(xa, cols, *geom)
                gemm(y2)
                epi(y3, b, relu)
                return y

        else:
            tmp = np.empty((o, n * npix), x.dtype)
            tmp3 = tmp.reshape(o, n, npix)
            gather = (
                _gather_bias_act if small else _pick(_gather_bias_act, _gather_bias_act_par, y.size)
            )

            def im2col_gemm(xa: np.ndarray) -> np.ndarray:
                im2col(xa, cols, *geom)
                gemm(tmp)
                gather(tmp3, b, relu, y3)
                return y

        cands.append(("gemm", im2col_gemm, not small))
    if n == 1 and floats and call.macs() >= _DIRECT_MACS:
        # one image: the conv2d family's variants that apply, raced with the GEMM
        try:
            from .kernels.conv import blocked_cy, flat_cy, pointwise_cy, winograd_cy
        except ImportError:  # Cython kernels not built: the GEMM
            return _conv_choice(plan, cands, x, xs, ys, label, False)
        from .kernels import registry

        if winograd_cy.applies(w.shape, stride, dilation, groups):
            for f4 in (False, True):
                kernel = _winograd_kernel(x.shape, w, b, padding, nt, f4)
                if kernel is not None:
                    name = "winograd-cython " + ("F(4x4)" if f4 else "F(2x2)")
                    cands.append(_winograd_run(name, kernel, call, w, b, y, act, not small))
        if blocked_cy.applies(w.shape, stride, dilation, groups):
            family("conv2d", call, "blocked-cython", False)  # one image: one thread
        if pointwise_cy.applies(w.shape, padding, dilation, groups):
            family("conv2d", call, "pointwise-cython", False)
        if flat_cy.applies(w.shape, stride, dilation, groups) and not pointwise:
            family("conv2d", call, "flat-cython", False)
        picked = registry.resolved_name("conv2d", call)
        if not any(c[0].startswith(picked) for c in cands):  # auto's own pick
            family("conv2d", call, picked, not small)
    return _conv_choice(plan, cands, x, xs, ys, label, n == 1)


# below this many multiply-adds a batch-1 conv runs its GEMM path without a race (the
# family's own direct kernels' range: nothing else pays there)
_DIRECT_MACS = 100_000


def _winograd_run(
    name: str, kernel: Callable, call: Any, w: np.ndarray, b: np.ndarray, y: np.ndarray,
    act: Callable | None, threaded: bool,
) -> tuple[str, Callable[[np.ndarray], np.ndarray], bool]:  # fmt: skip
    from .kernels import registry

    fallback = registry.get("conv2d", "im2col-cython")

    def run(xa: np.ndarray) -> np.ndarray:
        out = y
        if not kernel(xa, y):  # a NaN or an infinity in x: the GEMM puts it where a
            out = call.forward(fallback, xa, w, b)  # direct sum does
        if act is not None:
            act(out)
        return out

    return name, run, threaded


class _Choice:
    """The kernels one conv step may run, and the one it runs (``index``): a plan built
    for one image tunes them in place (:meth:`_Plan.tune`), timing each inside whole runs
    of the plan so every candidate meets the caches as the plan leaves them."""

    def __init__(self, cands: list[tuple[str, Callable, bool]]) -> None:
        self.cands = cands
        self.index = 0
        self.timing = False
        self.last = 0.0

    @property
    def name(self) -> str:
        return self.cands[self.index][0]

    @property
    def threaded(self) -> bool:
        return self.cands[self.index][2]


def _conv_choice(
    plan: _Plan, cands: list, x: Tensor, xs: int, ys: int, label: str, race: bool
) -> Callable:
    """The step running the first candidate; with ``race`` the plan's tuning may switch
    it to another (see :class:`_Choice`)."""
    import time

    choice = _Choice(cands if race else cands[:1])
    plan.choices[len(plan.kinds)] = choice
    plan.kinds.append(label)
    clock = time.perf_counter

    def step(vals: list) -> None:
        run = choice.cands[choice.index][1]
        if choice.timing:
            t0 = clock()
            vals[ys] = run(np.ascontiguousarray(vals[xs]))
            choice.last = clock() - t0
        else:
            vals[ys] = run(np.ascontiguousarray(vals[xs]))

    return step


def _conv_transpose_step(plan: _Plan, r: Record, xs: int, ys: int, act: int) -> Callable:
    p = r.params
    x, w = p["x"], np.ascontiguousarray(p["w"].data)
    c, og, kh, kw = w.shape
    groups = int(p["groups"])
    o = og * groups
    b = p["b"].data if p["b"] is not None else np.zeros(o, w.dtype)
    b = np.ascontiguousarray(b, dtype=x.dtype)
    stride, padding = p["stride"], p["padding"]
    output_padding, dilation = p["output_padding"], p["dilation"]
    n, _, h, wd = x.shape
    macs = n * c * h * wd * og * kh * kw
    small = macs < plan.serial_macs
    plan.kinds.append("conv_transpose + bias" + _ACT_NAMES[act])
    if n == 1 and groups == 1 and int(np.prod(r.out.shape)):
        y = np.empty(r.out.shape, x.dtype)
        plan.vals[ys] = y
        # one image: one GEMM to the taps' columns, then the fold with bias and
        # activation in one pass over the output (a small call's fold costs less than
        # the phases' several GEMMs)
        plan.base_threaded |= not small
        mm = _serial_matmul if small else matmul
        w2t = np.ascontiguousarray(w.reshape(c, og * kh * kw).T)
        cols = np.empty((og * kh * kw, h * wd), x.dtype)
        geom = (h, wd, kh, kw, *stride, *padding, *dilation)

        def step(vals: list) -> None:
            mm(w2t, np.ascontiguousarray(vals[xs]).reshape(c, h * wd), out=cols)
            _fold_bias_act(cols, b, y, *geom, act)

        return step
    # a batch (or groups): the variant auto picks, then the activation in place
    plan.base_threaded |= not small
    call = ConvTranspose2dCall.of(x, w, stride, padding, output_padding, dilation, groups)
    variant = resolve_variant(call.op, call, None, training=False)
    bias = None if p["b"] is None else b

    def step(vals: list) -> None:
        out = call.forward(variant, np.ascontiguousarray(vals[xs]), w, bias)
        if act:
            flat = out.reshape(-1)
            _act_into(flat, flat, act)
        vals[ys] = out

    return step


def _linear_step(plan: _Plan, r: Record, xs: int, ys: int, relu: bool) -> Callable:
    p = r.params
    x, w = p["x"], p["w"].data
    wt = np.ascontiguousarray(w.T)
    b = None if p["b"] is None else p["b"].data
    y = np.empty(r.out.shape, x.dtype)
    plan.vals[ys] = y

    mm = _serial_matmul if x.size * wt.shape[1] < plan.serial_macs else matmul
    flat = y.reshape(-1)
    if x.shape[0] == 1 and x.dtype == w.dtype:
        # one row: y^T = w @ x^T, each output one dot product along a row of w as it lies
        # (streams the weights once; the x @ w.T product reads them across); on one BLAS
        # thread or, in a plan with threaded steps, raced against all of them
        wc = np.ascontiguousarray(w)
        o, f = wc.shape
        col = y.reshape(o, 1)

        def gemv_with(mult: Callable) -> Callable[[np.ndarray], np.ndarray]:
            def gemv(xa: np.ndarray) -> np.ndarray:
                mult(wc, xa.reshape(f, 1), out=col)
                if b is not None:
                    np.add(y, b, out=y)
                if relu:
                    _relu_into(flat, flat)
                return y

            return gemv

        cands = [("gemv", gemv_with(_serial_matmul), False)]
        if plan.serial_macs < ALL_SERIAL and f * o >= _DIRECT_MACS:
            cands.append(("gemv-threads", gemv_with(matmul), True))
        return _conv_choice(plan, cands, x, xs, ys, "linear" + (" + relu" if relu else ""), True)
    plan.base_threaded |= mm is matmul

    def step(vals: list) -> None:
        mm(vals[xs], wt, out=y)
        if b is not None:
            np.add(y, b, out=y)
        if relu:
            _relu_into(flat, flat)

    plan.kinds.append("linear" + (" + relu" if relu else ""))
    return step


def _bn_step(plan: _Plan, r: Record, xs: int, ys: int, relu: bool, inplace: bool) -> Callable:
    x = r.params["x"]
    scale, shift = (a.astype(x.dtype) for a in _bn_affine(r))
    n, c = x.shape[:2]
    pix = int(np.prod(x.shape[2:], dtype=np.int64))
    y = None if inplace else np.empty(x.shape, x.dtype)
    plan.vals[ys] = y
    plan.kinds.append("batch norm" + (" + relu" if relu else ""))
    if x.size >= _PARALLEL_ELEMS and x.dtype in (np.float32, np.float64):
        # a large one: the batch_norm family's eval pass and the fused family's ReLU, both
        # on tapegrad's OpenMP team
        from .kernels.norm import BatchNormEvalCall

        mod = resolve_variant("batch_norm", BatchNormEvalCall.of(np.empty((n, c, pix), x.dtype)))
        act = _relu_pass(np.empty((n, c, pix), x.dtype)) if relu else None

        def step_family(vals: list) -> None:
            out = mod.bn_forward_eval(
                np.ascontiguousarray(vals[xs]).reshape(n, c, pix), scale, shift
            )
            if act is not None:
                act(out)
            vals[ys] = out.reshape(x.shape)

        return step_family

    def step(vals: list) -> None:
        src = np.ascontiguousarray(vals[xs])
        dst = src if y is None else y
        _affine_act(src.reshape(n, c, pix), scale, shift, relu, dst.reshape(n, c, pix))
        vals[ys] = dst

    return step


def _relu_step(plan: _Plan, xs: int, ys: int, shape_: tuple, dtype: Any, inplace: bool) -> Callable:
    y = None if inplace else np.empty(shape_, dtype)

    def step(vals: list) -> None:
        src = np.ascontiguousarray(vals[xs])  # in place: on a copy of a strided view
        dst = src if y is None else y
        _relu_into(src.reshape(-1), dst.reshape(-1))
        vals[ys] = dst

    plan.kinds.append("relu")
    return step


def _add_step(plan: _Plan, r: Record, a: Any, b: Any, ys: int, relu: bool) -> Callable:
    y = np.empty(r.out.shape, r.out.dtype)
    plan.vals[ys] = y
    ga, gb = a, b

    flat = y.reshape(-1)

    def step(vals: list) -> None:
        np.add(ga(vals), gb(vals), out=y)
        if relu:
            _relu_into(flat, flat)

    plan.kinds.append("add" + (" + relu" if relu else ""))
    return step


def _generic_step(plan: _Plan, r: Record, getter: Callable, ys: int) -> Callable:
    fn = r.fn
    args = [getter(a) for a in r.args]
    kwargs = {k: getter(v) for k, v in (r.kwargs or {}).items()}

    def step(vals: list) -> None:
        vals[ys] = fn.forward(
            Context(()), *[a(vals) for a in args], **{k: v(vals) for k, v in kwargs.items()}
        )

    plan.kinds.append(fn.__name__)
    return step


def _getter(slots: dict[int, int]) -> Callable[[Any], Callable[[list], Any]]:
    """``getter(v)``: a function of the slot list giving v's value at run time (a slot for
    traced tensors, the array for constants, v itself for options)."""

    def getter(v: Any) -> Callable[[list], Any]:
        if isinstance(v, Tensor):
            if id(v) in slots:
                s = slots[id(v)]
                return lambda vals: vals[s]
            data = v.data
            return lambda vals: data
        if isinstance(v, (tuple, list)) and any(isinstance(t, Tensor) for t in v):
            parts = [getter(t) for t in v]
            kind = type(v)
            return lambda vals: kind(g(vals) for g in parts)
        return lambda vals: v

    return getter


def build_plan(
    records: list[Record],
    inputs: list[Tensor],
    outputs: list[Tensor],
    serial_macs: int | None = None,
) -> _Plan:
    """The steps of a traced (and folded) forward, each writing a buffer of its own.

    Conv and linear steps take a following ReLU (when they are its only input); batch
    norms that remain run as one affine pass (with a following ReLU); ReLU and batch norm
    overwrite their input when nothing else reads it. Every other op runs its Function's
    forward, with no tape. Conv and linear steps below ``serial_macs`` multiply-adds (default
    :data:`SERIAL_MACS`) run on the calling thread.
    """
    plan = _Plan(serial_macs)
    slots: dict[int, int] = {}
    for t in inputs:
        slots[id(t)] = plan.slot()
        plan.inputs.append(slots[id(t)])
    uses = _consumers(records, outputs)
    producer = {id(r.out): r for r in records}
    graph_inputs = {id(t) for t in inputs}

    def owned(t: Tensor) -> bool:
        """Only this step reads t, and t is a buffer of the plan's own (not an input,
        a constant or a view of another value)."""
        r = producer.get(id(t))
        return (
            uses.get(id(t), 0) == 1
            and id(t) not in graph_inputs
            and r is not None
            and r.fn not in _ALIASING
        )

    getter = _getter(slots)

    fused_relu: set[int] = set()  # indices of ReLU records folded into their producer
    index = {id(r.out): i for i, r in enumerate(records)}
    for i, r in enumerate(records):
        if i in fused_relu:
            continue
        ys = plan.slot()
        # a ReLU reading only this step's output rides along
        nxt = records[i + 1] if i + 1 < len(records) else None
        follows = (
            nxt is not None
            and nxt.params.get("a") is r.out
            and uses.get(id(r.out), 0) == 1
            and r.out.dtype.kind == "f"
        )
        relu = follows and nxt.fn is activation.ReLU
        sigmoid = follows and nxt.fn is ew.Sigmoid and r.fn is conv_transpose.ConvTranspose2d
        out_tensor = nxt.out if relu or sigmoid else r.out
        x = r.params.get("x", r.params.get("a"))
        if r.fn in (conv.Conv2d, conv.DepthwiseConv2d) and id(x) in slots:
            step = _conv_step(plan, r, slots[id(x)], ys, relu)
        elif (
            r.fn is conv_transpose.ConvTranspose2d
            and id(x) in slots
            and x.ndim == 4
            and x.dtype.kind == "f"
        ):
            act = 1 if relu else 2 if sigmoid else 0
            step = _conv_transpose_step(plan, r, slots[id(x)], ys, act)
            relu = relu or sigmoid
        elif r.fn is linalg.Linear and x.ndim == 2 and id(x) in slots:
            step = _linear_step(plan, r, slots[id(x)], ys, relu)
        elif r.fn is norm.BatchNorm and not r.params["training"] and id(x) in slots:
            step = _bn_step(plan, r, slots[id(x)], ys, relu, owned(x))
        elif r.fn is activation.ReLU and id(x) in slots and x.dtype.kind == "f":
            step = _relu_step(plan, slots[id(x)], ys, r.out.shape, r.out.dtype, owned(x))
            relu, out_tensor = False, r.out
        elif (
            r.fn is ew.Add
            and isinstance(r.params["b"], Tensor)
            and r.out.shape == np.broadcast_shapes(x.shape, r.params["b"].shape)
        ):
            step = _add_step(plan, r, getter(x), getter(r.params["b"]), ys, relu)
        else:
            step = _generic_step(plan, r, getter, ys)
            relu, out_tensor = False, r.out
        if relu:
            fused_relu.add(index[id(nxt.out)])
        plan.steps.append(step)
        slots[id(out_tensor)] = ys
        if out_tensor is not r.out:
            slots[id(r.out)] = ys
    for t in outputs:
        if id(t) not in slots:
            data = t.data
            s = plan.slot(data)
            slots[id(t)] = s
        plan.outputs.append(slots[id(t)])
    plan.threaded = plan.base_threaded or any(c.threaded for c in plan.choices.values())
    return plan


class InferenceModel:
    """A model compiled for inference by :func:`optimize`: call it like the model.

    The first call with a new input shape and dtype traces one eval forward of (a copy of)
    the model, folds batch norms, fuses ReLUs and builds the plan; later calls with that
    shape run the plan: no tape, no autograd records, each step writing a buffer allocated
    once. Results are fresh arrays (the buffers are reused by the next call). Weights are
    those of the model when :func:`optimize` was called. One instance is not meant to be
    called from two threads at once (the buffers are shared).
    """

    def __init__(
        self, model: Any, fold: bool = True, fuse: bool = True, serial_macs: int | None = None
    ) -> None:
        self.model = copy.deepcopy(model)
        self.model.eval()
        self.fold, self.fuse = fold, fuse
        self.serial_macs = serial_macs
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()
        self.max_plans = 8

    def trace(self, *inputs: Any) -> tuple[list[Record], list[Tensor], list[Tensor]]:
        """The (folded) records of one eval forward on ``inputs``, the input tensors and
        the output tensors."""
        tensors = [Tensor(np.asarray(x.data if isinstance(x, Tensor) else x)) for x in inputs]
        with no_grad():
            records, out = trace(self.model, tensors)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if not all(isinstance(o, Tensor) for o in outs):
            raise TypeError(
                f"InferenceModel: the model must return a Tensor or a tuple of Tensors, got "
                f"{type(out).__name__}"
            )
        if self.fold:
            records = fold_batch_norm(records, outs)
        return records, tensors, outs

    def plan(self, *inputs: Any) -> _Plan:
        """The plan for inputs of these shapes and dtypes (built on first use)."""
        key = tuple((np.shape(_raw(x)), np.asarray(_raw(x)).dtype.str) for x in inputs)
        found = self._plans.get(key)
        if found is not None:
            self._plans.move_to_end(key)
            return found
        records, tensors, outs = self.trace(*inputs)
        if self.fuse:
            arrays = [np.asarray(_raw(x)) for x in inputs]
            built = build_plan(records, tensors, outs, self.serial_macs)
            built.tune(arrays)
            if self.serial_macs is None and built.threaded:
                serial = build_plan(records, tensors, outs, ALL_SERIAL)
                serial.tune(arrays)
                built = _race(built, serial, arrays)
        else:
            built = _Plan()
            built.inputs = [built.slot() for _ in tensors]
            slots = {id(t): s for t, s in zip(tensors, built.inputs)}

            getter = _getter(slots)

            for r in records:
                ys = built.slot()
                built.steps.append(_generic_step(built, r, getter, ys))
                slots[id(r.out)] = ys
            built.outputs = [slots.get(id(t), built.slot(t.data)) for t in outs]
        self._plans[key] = built
        while len(self._plans) > self.max_plans:
            self._plans.popitem(last=False)
        return built

    def __call__(self, *inputs: Any) -> Any:
        """Forward: Tensors or arrays in, Tensor(s) out (no tape is recorded)."""
        if not inputs:
            raise TypeError("InferenceModel: call with the model's input(s)")
        arrays = []
        for i, x in enumerate(inputs):
            a = _raw(x)
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                raise TypeError(
                    f"InferenceModel: input {i} must be a float Tensor or ndarray, got "
                    f"{type(x).__name__} of dtype {getattr(a, 'dtype', None)}"
                )
            arrays.append(a)
        outs = self.plan(*arrays).run(arrays)
        res = [Tensor._from_op(o) for o in outs]
        return res[0] if len(res) == 1 else tuple(res)

    def describe(self, *inputs: Any, kernels: bool = False) -> list[str]:
        """The plan's steps for these inputs, one line each (``conv + bias + relu``, ...);
        with ``kernels``, each conv step followed by the kernel it runs in brackets
        (``conv + bias + relu [winograd-cython F(2x2)]``)."""
        plan = self.plan(*inputs)
        if not kernels:
            return list(plan.kinds)
        names = plan.kernels
        return [k + (f" [{names[i]}]" if i in names else "") for i, k in enumerate(plan.kinds)]


# a plan whose forward takes longer than this tunes its steps on two runs per candidate
TUNE_SECONDS = 0.01
# a tuned step keeps its first candidate unless another takes at most this share of its time
TUNE_MARGIN = 0.95

# serial_macs that keeps every step on the calling thread
ALL_SERIAL = 2**62
# a threaded plan whose forward takes longer than this is compared with the serial one on
# a single timed run each (instead of alternated rounds)
RACE_SECONDS = 0.02
# the threaded plan is kept when its forward takes at most this share of the serial one's
RACE_MARGIN = 0.9


def _race(a: _Plan, b: _Plan, arrays: list[np.ndarray], rounds: int = 15) -> _Plan:
    """The faster of two plans of one forward on these inputs: alternated runs, medians;
    the threaded plan ``a`` must beat the serial ``b`` by ``RACE_MARGIN`` (the serial one
    is the steadier when they are close). When ``a`` takes longer than ``RACE_SECONDS``
    per run, one timed run of each decides (a longer race would cost seconds)."""
    import time

    def timed(p: _Plan) -> float:
        p.run(arrays)
        t0 = time.perf_counter()
        p.run(arrays)
        return time.perf_counter() - t0

    ta = timed(a)
    if ta > RACE_SECONDS:
        return a if ta <= RACE_MARGIN * timed(b) else b
    for _ in range(2):
        a.run(arrays)
        b.run(arrays)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for p, t in zip((a, b), times):
            t0 = time.perf_counter()
            p.run(arrays)
            t.append(time.perf_counter() - t0)
    return a if float(np.median(times[0])) <= RACE_MARGIN * float(np.median(times[1])) else b


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def optimize(
    model: Any, fold: bool = True, fuse: bool = True, serial_macs: int | None = None
) -> InferenceModel:
    """An inference version of ``model``: batch norm folded, ReLUs fused, no tape.

    Parameters
    ----------
    model : Module
        The trained model (it is copied; the original is left as it is, and later
        changes to its weights do not reach the copy).
    fold : bool
        Fold each eval batch norm into the conv2d (any groups) or linear layer before it.
    fuse : bool
        Run conv + bias + ReLU (and linear + bias + ReLU, batch norm + ReLU) as one step
        writing a preallocated buffer; False runs each op's forward as it is (no tape).
        For one image each conv step has candidate kernels (the plan's unfold + GEMM and
        the conv2d family's variants that apply: Winograd F(2x2) and F(4x4) with the
        weights transformed once, blocked, pointwise, flat and ``auto``'s own pick; the
        depthwise family's); the first
        call times each inside whole runs of the plan and keeps the fastest. A batch's
        conv steps run the variant ``auto`` picks.
    serial_macs : int, optional
        Conv and linear steps with fewer multiply-adds than this run on the calling thread
        (unfold, one-thread GEMM, epilogue); larger ones use every thread. 0 puts every
        such step on the threads; a huge value keeps a whole forward on one thread. None
        (the default): :data:`SERIAL_MACS`, and when that leaves some step on the threads,
        the first call with a new input shape also builds the all-serial plan, times both
        (alternated runs) and keeps the faster: on a machine busy with other work a
        parallel region waits for a descheduled thread, and the serial plan wins there.

    Returns
    -------
    InferenceModel
        Call it like the model: input (N, ...) float Tensor or ndarray -> Tensor, equal to
        ``model.eval()``'s forward within float rounding. Dropout is the identity.

    Raises
    ------
    TypeError
        A call with non-float input, or a model returning something other than Tensors.
    """
    return InferenceModel(model, fold=fold, fuse=fuse, serial_macs=serial_macs)
