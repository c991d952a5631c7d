"""Transposed convolution by output phases (sub-pixel decomposition), see ``_phase_cy.pyx``.

Forward: each output phase (for stride 2, the four interleaved grids of even/odd rows and
columns) is a small stride-1 convolution with the filter taps that land on it; per block
of images (``_block_images``: their padded copies side by side) one GEMM per tap reading
the images in place, then one pass writing each output row once, contiguously, from its
phases with the bias (and the ReLU, ``forward_relu``), so no output pixel is accumulated
from a scattered column matrix. Calls with 8 to 16 output channels run each phase's
stride-1 convolution in direct register tiles instead (``_direct_forward``: 16 output
channels across the vector lanes x 2 rows x 8 columns, the padded image read in place,
no GEMM), and so do calls with 24 to 32 (``_DIRECT_WIDE``: the input gradient's tile of 32
output channels x 8 columns) and, on inputs up to 16x16, with 33 to 128 in blocks of 32
(``_DIRECT_BLOCKS``). Backward, calls with 24 or
more input channels, 4 or more output channels and at most 1024 output channels x taps
(``_direct_*_applies``): both gradients by the direct kernels of ``_direct_grad_cy.pyx``
from one zero-padded copy of each image's output gradient, no column buffer and no GEMM:
the input gradient (conv2d of the output gradient with the same weights and stride) in
register tiles of 32 input channels x 8 columns, the weight gradient in tiles of 8
(output channel, tap) pairs x 32 input channels over each image's positions, and the bias
gradient (``backward_with_bias``) summed as each image is read; the tiles' weight tables,
transposed images and partial sums start on 64-byte boundaries, so no vector load of them
straddles two cache lines. Other calls:
one unfold of the output gradient per image feeds both the input gradient's and the weight
gradient's GEMM. Threads take blocks of images (forward; with too few blocks for the
team, groups of output channels too) or whole images (backward), the GEMMs one-thread
calls through NumPy's cblas (``kernels/cblas.py``).

Small planes (at most ``_BATCHED_MAX_PIXELS`` pixels, at most half or, with 256+ input
channels, three quarters as wide as the tiles' 8 columns; ``_few_columns``): the forward of
calls with 128+ input channels and the backward of calls with 256+ and weights over 1 MB
(and on inputs narrower than 8, gradients the direct kernels do not take) by one GEMM per
chunk of images
(``_phase_cy.forward_batched`` / ``backward_batched``), the chunk's images side by side as
the GEMM's columns and the GEMMs' rows split among the threads. With fewer images than
threads (batch 1) the direct kernels share each image among tasks (``_split``).

Groups other than 1, dtypes other than float32/float64, empty calls and builds whose
NumPy BLAS cannot be called from threads run ``col2im-cython`` instead, and so does the
forward of calls with fewer than 8 output channels (``_MIN_FORWARD_ROWS``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import cblas, memory, threads
from ..conv.im2col import _growth, workspace
from . import col2im_cy
from ._direct_grad_cy import channel_blocks as _channel_blocks
from ._direct_grad_cy import forward_direct as _forward_direct
from ._direct_grad_cy import gather as _gather
from ._direct_grad_cy import grads as _direct_grads
from ._direct_grad_cy import reduce_parts as _reduce_parts
from ._phase_cy import backward_batched, backward_shared, forward_batched, forward_phases
from .reference import out_size

# below this many multiply-adds a call runs on the calling thread
_GRAIN = 1 << 21

# the forward's GEMMs have the output channels as rows: with fewer than this many the
# forward runs col2im-cython's (one GEMM per image with the taps as rows); the backward's
# GEMMs do not depend on it (conv_autoencoder's last layer, 16->1: the phase backward
# ahead of col2im-cython's, col2im-cython's forward ahead of the phase forward)
_MIN_FORWARD_ROWS = 8

# the forward's GEMMs take a block of images at once (one GEMM per tap and block, the
# block's padded images side by side): blocks of at most this many bytes of padded images
# and phase output per thread
_BLOCK_BYTES = 256 * 1024


# the direct gradient kernels on (False: the unfold + GEMM backward on every call)
_DIRECT_INPUT_GRAD = True
_DIRECT_WEIGHT_GRAD = True


# The direct gradients ran ahead of the unfold + GEMM backward on the 4x4 stride-2 64->32
# layer and conv_autoencoder's 32->16 layer, both passes; its 16->1 layer (half a channel
# tile, one output channel) keeps the GEMMs (benchmarks/results/conv-transpose-passes.md).
# On the Zen 5 machine they also ran ahead on reductions of 1152 to 4096 output channels x
# taps (128->128 and 64->256 4x4, 256->128 and 128->128 3x3, 2x2 to 16x16 inputs), and with
# 16 to 23 input channels (half of each 32-channel tile empty) from 128 output channels x
# taps on (4x4 16->8, 16->16, 16->64; 3x3 16->16, 16->32), behind on 3x3 16->8 (72)
# (benchmarks/results/conv-transpose-small-planes.md). Larger reductions keep the GEMMs.
_DIRECT_MIN_IN = 24
_DIRECT_MIN_OUT = 4
_DIRECT_MAX_REDUCTION = 4096
_DIRECT_HALF_IN = 16
_DIRECT_HALF_MIN_REDUCTION = 128


def _direct_applies(x, w) -> bool:
    o, kh, kw = w.shape[1:]
    c, r = x.shape[1], o * kh * kw
    return (
        (c >= _DIRECT_MIN_IN or (c >= _DIRECT_HALF_IN and r >= _DIRECT_HALF_MIN_REDUCTION))
        and o >= _DIRECT_MIN_OUT
        and r <= _DIRECT_MAX_REDUCTION
    )


def _direct_input_grad_applies(x, w) -> bool:
    return _DIRECT_INPUT_GRAD and _direct_applies(x, w)


def _direct_weight_grad_applies(x, w) -> bool:
    return _DIRECT_WEIGHT_GRAD and _direct_applies(x, w)


# Small planes (inputs of at most this many pixels): both passes by one GEMM per chunk of
# images (``_phase_cy.forward_batched`` / ``backward_batched``), the chunk's images side by
# side as the GEMM's columns, instead of GEMMs or register tiles per image whose columns a
# plane of a few dozen pixels leaves mostly empty; the GEMMs' rows (or the input channels)
# split among the threads, so one image keeps the whole team busy and the weight gradient
# needs no per-thread partial sums (benchmarks/results/conv-transpose-small-planes.md).
# False: the paths above on every call.
_BATCHED = True
_BATCHED_MAX_PIXELS = 64
# images per chunk: as many as keep its column matrix within this many bytes
_BATCHED_BYTES = 4 << 20


# Which small planes: 128+ input channels (the GEMMs' depth) on inputs at most half as wide
# as the direct tiles' 8 columns, 256+ on inputs up to three quarters as wide; on 5 to 7
# wide inputs with 128 input channels the tiles and the GEMMs tied or the tiles led, and on
# 7 wide ones the tiles led at 256 too. The backward on those planes only with 256+ input
# channels and weights over ``_BATCHED_MIN_WEIGHT_BYTES`` (the direct weight gradient's
# per-thread partial sums then outgrow a core's L2; with smaller weights, or 128 input
# channels, the direct kernels led or tied), and on every plane narrower than the tiles
# whose gradients the direct kernels do not take (instead of one GEMM per image).
_BATCHED_MIN_IN = 128
_BATCHED_DEEP_IN = 256
_BATCHED_MIN_WEIGHT_BYTES = 1 << 20


def _few_columns(x) -> bool:
    c, h, wd = x.shape[1:]
    return (
        _BATCHED
        and h * wd <= _BATCHED_MAX_PIXELS
        and (
            (wd <= _WB // 2 and c >= _BATCHED_MIN_IN)
            or (wd <= _WB * 3 // 4 and c >= _BATCHED_DEEP_IN)
        )
    )


def _batched_forward_applies(x, w) -> bool:
    """The forward's rule (``_few_columns``)."""
    return _few_columns(x)


def _batched_applies(x, w) -> bool:
    """The backward's rule: ``_few_columns`` with ``_BATCHED_DEEP_IN`` input channels and
    weights over ``_BATCHED_MIN_WEIGHT_BYTES``, or a plane of at most ``_BATCHED_MAX_PIXELS``
    narrower than the tiles whose gradients the direct kernels do not take."""
    if not _BATCHED or x.shape[2] * x.shape[3] > _BATCHED_MAX_PIXELS or x.shape[3] >= _WB:
        return False
    deep = x.shape[1] >= _BATCHED_DEEP_IN and w.nbytes > _BATCHED_MIN_WEIGHT_BYTES
    return not _direct_applies(x, w) or (deep and _few_columns(x))


def _chunk(n: int, rows: int, plane: int, itemsize: int) -> int:
    """Images per chunk of the batched passes, the chunks' sizes evened out."""
    m = max(1, min(n, _BATCHED_BYTES // max(1, rows * plane * itemsize)))
    return -(-n // -(-n // m))


def _batched_forward(x, w, b, stride, padding, output_padding, dilation):
    """The forward by ``forward_batched`` (groups 1, float32/float64, non-empty)."""
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    ho = out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], output_padding[1], dilation[1])
    rows, plane = o * kh * kw, h * wd
    m = _chunk(n, rows, plane, x.itemsize)
    nt = _team(n * c * plane * rows)
    memory.check_fits("conv_transpose2d (phase, batched)", {
        "output": n * o * ho * wo * x.itemsize,
        "columns": (rows + c) * m * plane * x.itemsize,
    })  # fmt: skip
    y = np.empty((n, o, ho, wo), x.dtype)
    xb = workspace("phase-bx", (c * m * plane,), x.dtype)
    cols = workspace("phase-bcols", (rows * m * plane,), x.dtype)
    bias = np.zeros(1, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    with cblas.single_threaded():
        forward_batched(np.ascontiguousarray(x), np.ascontiguousarray(w).reshape(c, rows),
                        bias, b is not None, y, xb, cols, kh, kw, *stride, *padding,
                        *dilation, m, cblas.gemm_address(x.dtype), nt)  # fmt: skip
    return y


def _batched_backward(gy, x, w, stride, padding, dilation, need_x, need_w, need_b=False):
    """``(gx, gw, gb)`` (None where not asked for) by ``backward_batched``, ``gb`` (with
    ``need_b``) gy's per-channel sum, shared by the threads (not left to the op's sum on
    the calling thread)."""
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    rows, plane = o * kh * kw, h * wd
    m = _chunk(n, rows, plane, x.itemsize)
    nt = _team(n * c * plane * rows * (int(need_x) + int(need_w)))
    memory.check_fits("conv_transpose2d (phase, batched) backward", {
        "input gradient": x.nbytes if need_x else 0,
        "weight gradient": w.nbytes if need_w else 0,
        "columns": (rows + 2 * c) * m * plane * x.itemsize,
    })  # fmt: skip
    gx = np.empty_like(x) if need_x else _placeholder(x.dtype)
    gw = np.empty((c, rows), x.dtype) if need_w else _placeholder(x.dtype).reshape(1, 1)
    cols = workspace("phase-bcols", (rows * m * plane,), x.dtype)
    xb = workspace("phase-bx", (c * m * plane,), x.dtype) if need_w else gw.reshape(-1)
    gxb = workspace("phase-bgx", (c * m * plane,), x.dtype) if need_x else gw.reshape(-1)
    gb = np.empty(o, x.dtype) if need_b else None
    with cblas.single_threaded():
        backward_batched(gy, x, np.ascontiguousarray(w).reshape(c, rows), gx, gw, xb, cols,
                         gxb, need_x, need_w, kh, kw, *stride, *padding, *dilation, m,
                         cblas.gemm_address(x.dtype), nt, gb)  # fmt: skip
    return (gx if need_x else None), (gw.reshape(w.shape) if need_w else None), gb


# Fewer images than threads (batch 1 at 2 threads): the direct kernels share each image among
# tasks (rows of the output or input gradient, tiles of the weight gradient) instead of
# leaving threads idle. False: one image per task on every call.
_SPLIT_IMAGES = True


def _split(n: int, nt: int) -> int:
    """Tasks per image of the direct kernels: enough for the team when ``n < nt``."""
    return -(-nt // n) if _SPLIT_IMAGES and n < nt else 1


def _team(macs: int) -> int:
    return 1 if macs < _GRAIN else threads.get_num_threads()


def _supported(x, w, groups) -> bool:
    return (
        groups == 1
        and x.dtype in (np.float32, np.float64)
        and x.size > 0
        and w.size > 0
        and cblas.gemm_address(x.dtype) is not None
    )


def phases(w, stride, padding, dilation, hw, out_hw):
    """``w``'s taps as (O, C) matrices and the phase tables of :func:`geometry`."""
    c, o, kh, kw = w.shape
    wt = np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(kh * kw, o, c)
    return (wt, *geometry(w.shape, tuple(stride), tuple(padding), tuple(dilation),
                          tuple(hw), tuple(out_hw)))  # fmt: skip


def _phase_taps(r: int, s: int, p: int, d: int, k: int) -> list[tuple[int, int]]:
    """(filter index i, input offset) of the taps of a k-wide kernel (stride s, padding p,
    dilation d) that reach output phase r along one axis, i ascending: output r + s*a takes
    input a + offset through tap i."""
    return [(i, (r + p - i * d) // s) for i in range(k) if (r + p - i * d) % s == 0]


@functools.lru_cache(maxsize=256)
def geometry(w_shape, stride, padding, dilation, hw, out_hw):
    """The output phases of a transposed convolution with weights ``w`` (C, O, kh, kw) on
    (H, W) = ``hw`` inputs giving (Ho, Wo) = ``out_hw`` outputs.

    Returns ``(geo, taps, pad)`` (read-only, cached per shape):
    ``geo[p] = (ry, rx, first, count, qh, qw)`` for phase p = ry*sw + rx (first output row
    and column, its taps ``taps[first:first + count]``, output grid qh x qw);
    ``taps[t] = (i*kw + j, dy, dx)``: output pixel (ry + sh*a, rx + sw*b) takes input
    (a + dy, b + dx) through tap (i, j); ``pad = (pt, pl, hp, wp)``: the padded image
    (pt rows above and pl columns left of the input, hp x wp) in which every tap's
    input window of qh rows and wp columns stays inside (plus one spare row).
    """
    c, o, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    (h, wd), (ho, wo) = hw, out_hw

    geo = np.zeros((sh * sw, 6), np.intp)
    rows = []
    for ry in range(sh):
        ty = _phase_taps(ry, sh, ph, dh, kh)
        qh = max(0, -(-(ho - ry) // sh))
        for rx in range(sw):
            tx = _phase_taps(rx, sw, pw, dw, kw)
            qw = max(0, -(-(wo - rx) // sw))
            geo[ry * sw + rx] = (ry, rx, len(rows), len(ty) * len(tx), qh, qw)
            rows += [(i * kw + j, dy, dx, qh, qw) for i, dy in ty for j, dx in tx]
    t = np.array(rows, np.intp).reshape(-1, 5)
    pt = max(0, -int(t[:, 1].min())) if len(t) else 0
    pl = max(0, -int(t[:, 2].min())) if len(t) else 0
    hp = max([pt + h] + [dy + pt + qh for _, dy, _, qh, _ in rows])
    wp = max([pl + wd] + [dx + pl + qw for _, _, dx, _, qw in rows])
    taps = np.ascontiguousarray(t[:, :3]) if len(t) else np.zeros((1, 3), np.intp)
    geo.flags.writeable = taps.flags.writeable = False
    return geo, taps, (pt, pl, hp, wp)


# The forward of calls with 12 to 16 output channels (conv_autoencoder's 32->16 layer) by
# the direct register tiles of ``_direct_grad_cy.forward_direct`` (one vector of 16 output
# channels x 2 rows x 8 columns) instead of the phase GEMMs, whose GEMMs of 16 rows over a
# few dozen input channels run far below the machine's GEMM rate. With 8 output channels
# half of each vector is padding and the GEMMs stay ahead; 64->16 4x4 tied
# (benchmarks/results/conv-transpose-two-threads.md). False: the GEMMs on every call.
_DIRECT_FORWARD = True
_NB = 16  # forward_direct's output channels per tile
_DIRECT_FORWARD_MIN_OUT = 12

# The forward of calls with 24 to 32 output channels (the 4x4 stride-2 64->32 layer) by
# ``forward_direct``'s wide tiles: the input gradient's tile of 32 channels x 8 columns on
# the padded image, each phase's weights (C x its taps x 32) read from L1 by every tile of
# the phase, instead of one GEMM per tap of 32 rows over C (see
# benchmarks/results/conv-transpose-4x4.md). False: the GEMMs.
_DIRECT_WIDE = True
_DIRECT_WIDE_MIN_OUT = 24

# The forward of calls with 33 to 128 output channels on inputs of at most 256 pixels (16x16)
# by the wide tiles too, in blocks of 32 output channels inside the same pass over each
# image (``forward_direct``'s ``wblock``), when every block fills at least 24 of its 32
# lanes: on 4x4 to 16x16 inputs (128->64, 64->64, 256->128; 4x4 and 3x3 kernels) the blocks
# took 0.68-0.98x the phase GEMMs' time at 1 and 2 threads; on 32x32 inputs level, and
# 64->48 (a half-empty last block) 1.3-1.4x behind (benchmarks/results/conv-transpose-4x4.md).
# False: the GEMMs.
_DIRECT_BLOCKS = True
_DIRECT_BLOCKS_MAX_OUT = 128
_DIRECT_BLOCKS_MAX_PIXELS = 256


@functools.lru_cache(maxsize=256)
def direct_geometry(w_shape, stride, padding, dilation, hw, out_hw, lanes=16):
    """The phase table of :func:`_direct_grad_cy.forward_direct` (read-only, cached per
    shape), or None when a phase's taps are not evenly spaced.

    Returns ``(tab, (pt, pl, hp, wp), index)``: ``tab[p] = (ry, rx, nty, ntx, dy, dx, dhp,
    dwp, qh, qw, woff)`` (see ``forward_direct``), the padded image's geometry (every tile
    of 2 rows x ``_WB`` columns stays inside it) and the weight table's gather index
    (``_direct_weights``), ``lanes`` output channels per tap (16, or ``_CB`` for the wide
    tiles)."""
    c, o, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    (h, wd), (ho, wo) = hw, out_hw

    def taps_of(r, s, p, d, k):
        # offsets ascending
        return sorted(_phase_taps(r, s, p, d, k), key=lambda t: t[1])

    def spacing(ts):
        steps = {b[1] - a[1] for a, b in zip(ts, ts[1:])}
        return 1 if not steps else (steps.pop() if len(steps) == 1 else None)

    rows, taps, woff = [], [], 0
    pt = pl = 0
    hp, wp = h, wd
    for ry in range(sh):
        ty = taps_of(ry, sh, ph, dh, kh)
        qh = max(0, -(-(ho - ry) // sh))
        for rx in range(sw):
            tx = taps_of(rx, sw, pw, dw, kw)
            qw = max(0, -(-(wo - rx) // sw))
            dhp, dwp = spacing(ty), spacing(tx)
            if dhp is None or dwp is None:
                return None
            dy = ty[0][1] if ty else 0
            dx = tx[0][1] if tx else 0
            rows.append((ry, rx, len(ty), len(tx), dy, dx, dhp, dwp, qh, qw, woff))
            taps.append(([i for i, _ in ty], [j for j, _ in tx]))
            woff += c * len(ty) * len(tx) * lanes
            if ty and tx:
                pt, pl = max(pt, -dy), max(pl, -dx)
    for _, _, nty, ntx, dy, dx, dhp, dwp, qh, qw, _ in rows:
        if nty and ntx:
            hp = max(hp, dy + (nty - 1) * dhp + qh + 1)  # + 1: the tiles' row pairs
            wp = max(wp, dx + (ntx - 1) * dwp + -(-qw // _WB) * _WB)
    tab = np.array(rows, np.intp).reshape(-1, 11)
    # the weight table's gather index into w's values (C, O, kh, kw) and a zero after them:
    # per phase, entry ((c*nty + i')*ntx + j')*lanes + o takes w[c, o, i, j] for its taps'
    # filter rows i and columns j, the zero for o >= O
    parts = [np.zeros(1, np.intp)]
    for ys, xs in taps:
        if ys and xs:
            cc, ii, jj, oo = np.meshgrid(np.arange(c), ys, xs, np.arange(lanes), indexing="ij")
            idx = ((cc * o + oo) * kh + ii) * kw + jj
            parts.append(np.where(oo < o, idx, c * o * kh * kw).reshape(-1))
    index = np.concatenate(parts)[1:] if len(parts) > 1 else np.zeros(1, np.intp)
    tab.flags.writeable = index.flags.writeable = False
    return tab, (pt, pl, pt + hp, pl + wp), index


def _direct_weights(w, index, nt=1) -> np.ndarray:
    """``forward_direct``'s weight table: ``w``'s values (and a zero) gathered by the
    shape's ``index`` (``direct_geometry``), on a 64-byte boundary (``_aligned``), by
    ``nt`` threads."""
    out = _aligned(index.shape, w.dtype)
    _gather(np.ascontiguousarray(w).reshape(-1), index, out, nt)
    return out


@functools.lru_cache(maxsize=256)
def _blocks_index(w_shape, spans, stride, padding, dilation, hw, out_hw):
    """The weight tables of ``forward_direct``'s blocks of ``_CB`` output channels
    (``spans``: each block's (first, end) channel), one after the other, as one gather
    index into the whole of ``w`` (C, O, kh, kw) (read-only, cached per shape): each
    block's ``direct_geometry`` index (into ``w[:, s:e]``'s values) mapped to ``w``'s own
    and its zero lanes to ``w.size`` (the zero), so one gather shared by the threads
    builds every table, with no copy of ``w[:, s:e]`` per block."""
    c, o, kh, kw = w_shape
    parts = []
    for s, e in spans:
        index = direct_geometry((c, e - s, kh, kw), stride, padding, dilation, hw, out_hw,
                                _CB)[2]  # fmt: skip
        per = (e - s) * kh * kw  # one input channel's values in w[:, s:e]
        cc, rem = np.divmod(index, per)
        full = cc * (o * kh * kw) + s * kh * kw + rem
        parts.append(np.where(index >= c * per, c * o * kh * kw, full))
    out = np.ascontiguousarray(np.concatenate(parts), dtype=np.intp)
    out.flags.writeable = False
    return out


def _direct_forward(x, w, b, stride, padding, output_padding, dilation, relu):
    """The forward by ``forward_direct`` (groups 1, float32/float64, non-empty), or None
    where it does not apply (output channels outside ``_DIRECT_FORWARD_MIN_OUT`` to
    ``_NB`` and, for the wide tiles, ``_DIRECT_WIDE_MIN_OUT`` to ``_CB``; phases' taps not
    evenly spaced)."""
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    wide = _DIRECT_WIDE and _DIRECT_WIDE_MIN_OUT <= o <= _CB
    blocks = (
        _DIRECT_WIDE
        and _DIRECT_BLOCKS
        and _CB < o <= _DIRECT_BLOCKS_MAX_OUT
        and h * wd <= _DIRECT_BLOCKS_MAX_PIXELS
        and (o % _CB == 0 or o % _CB >= _DIRECT_WIDE_MIN_OUT)
    )
    if not (_DIRECT_FORWARD_MIN_OUT <= o <= _NB or wide or blocks):
        return None
    ho = out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], output_padding[1], dilation[1])
    if ho <= 0 or wo <= 0:
        return None
    # the blocks of output channels (one when o fits a tile), each its own weight table
    spans = [(i, min(o, i + _CB)) for i in range(0, o, _CB)] if blocks else [(0, o)]
    geos = [direct_geometry((c, e - s, kh, kw), tuple(stride), tuple(padding),
                            tuple(dilation), (h, wd), (ho, wo), _CB if wide or blocks else _NB)
            for s, e in spans]  # fmt: skip
    if any(g is None for g in geos):
        return None
    nt = _team(n * c * h * wd * o * kh * kw)
    _, (pt, pl, hp, wp), _ = geos[0]
    memory.check_fits("conv_transpose2d (phase, direct)", {
        "output": n * o * ho * wo * x.itemsize,
        "padded images": nt * c * hp * wp * x.itemsize,
    })  # fmt: skip
    y = np.empty((n, o, ho, wo), x.dtype)
    xpad = workspace("phase-xd", (nt, c * hp * wp), x.dtype)
    accs = _aligned_workspace("phase-acc-f", nt, 2 * _CB * _WB, x.dtype)
    bias = np.zeros(o, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    mask = np.empty(y.shape, np.uint8) if relu else None
    # one table per block, side by side (every block's table has the same size, a multiple
    # of the lanes, so each starts on a 64-byte boundary as the first does)
    if blocks:
        wblock = geos[0][2].size
        index = _blocks_index(w.shape, tuple(spans), tuple(stride), tuple(padding),
                              tuple(dilation), (h, wd), (ho, wo))  # fmt: skip
        wtab = _aligned(index.shape, w.dtype)
        _gather(np.ascontiguousarray(w).reshape(-1), index, wtab, nt)
    else:
        wblock, wtab = 0, _direct_weights(w, geos[0][2], nt)
    tab = geos[0][0]
    _forward_direct(np.ascontiguousarray(x), wtab, tab, bias, b is not None, y, xpad, accs,
                    np.zeros(nt, np.intp), stride[0], stride[1], pt, pl, hp, wp, nt, relu,
                    mask, wide or blocks, wblock, _split(n, nt))  # fmt: skip
    return (y, mask) if relu else y


def forward(x, w, b, stride, padding, output_padding, dilation, groups):
    y = _forward(x, w, b, stride, padding, output_padding, dilation, groups, False)
    if y is None:
        return col2im_cy.forward(x, w, b, stride, padding, output_padding, dilation, groups)
    return y


def forward_relu(x, w, b, stride, padding, output_padding, dilation, groups):
    """``(relu(y), mask)`` for ``y = forward(x, w, b, ...)``: the bias and the ReLU applied
    as the phases' pixels are written (the ``bias_relu`` epilogue's values and uint8 mask,
    ``kernels/fused``), or None where this call's forward is not the phase GEMMs (the
    caller then runs the forward and the epilogue apart)."""
    return _forward(x, w, b, stride, padding, output_padding, dilation, groups, True)


def _forward(x, w, b, stride, padding, output_padding, dilation, groups, relu):
    if not _supported(x, w, groups) or w.shape[1] < _MIN_FORWARD_ROWS:
        return None
    if _batched_forward_applies(x, w):  # forward_relu: the forward, then the epilogue apart
        if relu:
            return None
        return _batched_forward(x, w, b, stride, padding, output_padding, dilation)
    if _DIRECT_FORWARD:
        out = _direct_forward(x, w, b, stride, padding, output_padding, dilation, relu)
        if out is not None:
            return out
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    ho = out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], output_padding[1], dilation[1])
    if ho <= 0 or wo <= 0:
        return None
    wt, geo, taps, (pt, pl, hp, wp) = phases(w, stride, padding, dilation, (h, wd), (ho, wo))
    nt = _team(n * c * h * wd * o * kh * kw)
    nph = len(geo)
    nb = _block_images(n, c, nph * o, hp * wp, x.itemsize, nt)
    nblk = -(-n // nb)
    # too few blocks for the team: the output channels split among tasks too
    og = o if nblk >= 2 * nt else -(-o // -(-2 * nt // nblk))
    pad = nb * c * hp * wp + wp
    zsize = nph * og * ((nb - 1) * hp * wp + int(geo[:, 4].max()) * wp)
    memory.check_fits("conv_transpose2d (phase)", {
        "output": n * o * ho * wo * x.itemsize,
        "padded images": nt * pad * x.itemsize,
        "phase outputs": nt * zsize * x.itemsize,
    })  # fmt: skip
    y = np.empty((n, o, ho, wo), x.dtype)
    xpad = workspace("phase-x", (nt, pad), x.dtype)
    zbuf = workspace("phase-z", (nt, max(1, zsize)), x.dtype)
    held = np.full(nt, -1, np.intp)
    bias = np.zeros(1, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    mask = np.empty(y.shape, np.uint8) if relu else None
    with cblas.single_threaded():
        forward_phases(np.ascontiguousarray(x), wt, geo, taps, bias, b is not None, y, xpad,
                       zbuf, held, stride[0], stride[1], pt, pl, hp, wp,
                       cblas.gemm_address(x.dtype), nt, relu, mask, nb, og)  # fmt: skip
    return (y, mask) if relu else y


def _block_images(n: int, c: int, rows: int, plane: int, itemsize: int, nt: int) -> int:
    """Images per forward task: as many as keep a thread's padded images (``c`` planes
    each) and phase outputs (``rows`` planes) within ``_BLOCK_BYTES``, in blocks of equal
    size, at least two blocks per thread when the batch allows (load balance)."""
    nb = min(n, _BLOCK_BYTES // ((c + rows) * plane * itemsize))
    if nt > 1:
        nb = min(nb, n // (2 * nt))
    nb = max(1, nb)
    return -(-n // -(-n // nb))  # the same number of blocks, their sizes evened out


_CB, _WB = 32, 8  # the direct input gradient's tile: channels x columns (_direct_grad_cy)


def direct_grads(gy, x, w, stride, padding, dilation, need_x, need_w, mask=None, bias=False):
    """``(gx, gw)`` (None where not asked for) by the direct kernels of ``_direct_grad_cy``
    in one pass over the images: each image's output gradient padded once for both
    (groups 1, float32/float64, gy and x C-contiguous). With ``mask`` (gy's shape, uint8,
    C-contiguous): ``(gx, gw, gb)`` for the output gradient ``gy`` where mask else 0, each
    image masked as the kernels read it, and gb its per-channel sum; with ``bias`` (no
    mask): ``(gx, gw, gb)``, gb gy's per-channel sum, each image added as it is read."""
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    cp = -(-c // _CB) * _CB
    hp, wp = _padded_size(x, w, stride, dilation)
    nq = o * kh * kw
    nqp = -(-nq // 8) * 8
    nt = _team(n * c * h * wd * o * kh * kw * (int(need_x) + int(need_w)))
    memory.check_fits("conv_transpose2d (phase) gradients", {
        "input gradient": x.nbytes if need_x else 0,
        "weight gradient parts": nt * nqp * cp * x.itemsize if need_w else 0,
        "padded gradients": nt * o * hp * wp * x.itemsize,
        "transposed images": nt * h * wd * cp * x.itemsize if need_w else 0,
    })  # fmt: skip
    one = _placeholder(x.dtype)  # the placeholder of an array not asked for
    if need_x:
        # per block of _CB input channels its (o, kh, kw, _CB) weights, one after the other:
        # each tile reads its block as one contiguous stream
        wt = _aligned((cp * o * kh * kw,), x.dtype)
        _channel_blocks(np.ascontiguousarray(w, dtype=x.dtype).reshape(c, -1), wt)
        gx = np.empty_like(x)
        accs = _aligned_workspace("phase-acc", nt, _CB * _WB, x.dtype)
    else:
        wt, gx, accs = one.reshape(-1), one, one.reshape(1, 1)
    if need_w:
        qoff = _tap_offsets(o, kh, kw, hp, wp, dh, dw)
        # zeroed by the kernel, each thread its own part
        parts = _aligned_workspace("phase-parts", nt, nqp * cp, x.dtype).reshape(nt, nqp, cp)
        xts = _aligned_workspace("phase-xt", nt, h * wd * cp, x.dtype)
    else:
        qoff = _tap_offsets(1, 1, 1, 1, 1, 1, 1)
        parts, xts = one.reshape(1, 1, 1), one.reshape(1, 1)
    buf = workspace("phase-gy", (nt, o * hp * wp), x.dtype)
    masked = rows = None
    if mask is not None:
        masked = workspace("phase-gym", (nt, gy[0].size), x.dtype)
    if mask is not None or bias:
        rows = workspace("phase-rows", (nt, gy[0].size), x.dtype)  # zeroed by the kernel
    fresh = np.zeros(nt, np.intp)
    _direct_grads(gy, x, wt, qoff, gx, parts, buf, accs, xts, need_x, need_w, kh, kw, sh, sw,
                  ph, pw, dh, dw, hp, wp, cp, nt, fresh, mask, masked, rows, _split(n, nt),
                  True)  # fmt: skip
    idle = fresh == 0  # threads that took no task: their parts and rows still to be zeroed
    if idle.any():
        if need_w:
            parts[idle] = 0
        if rows is not None:
            rows[idle] = 0
    gw = None
    if need_w:
        gw = np.empty((c, nq), x.dtype)
        _reduce_parts(parts, gw, nt)
        gw = gw.reshape(w.shape)
    if rows is None:
        return (gx if need_x else None), gw
    # the bias gradient: the images' sum (per thread, then the threads'), each channel's row
    # added pairwise, as the unfused channel sum does
    total = rows[0] if nt == 1 else rows.sum(axis=0)
    return (gx if need_x else None), gw, np.add.reduce(total.reshape(o, -1), axis=1)


def backward_relu(gy, mask, x, w, stride, padding, output_padding, dilation, groups, need_x,
                  need_w):  # fmt: skip
    """``(gx, gw, gb)`` of ``relu(conv_transpose2d(x, w, b, ...))`` for its output gradient
    ``gy`` and the ReLU's uint8 ``mask`` (1 where the gradient flows, ``forward_relu``'s):
    the mask applied and the bias gradient summed as the direct gradient kernels read each
    image, no masked copy of gy; None where this call's gradients are not the direct
    kernels' (the caller then masks gy and runs ``backward``)."""
    if not _supported(x, w, groups) or gy.size == 0 or not (need_x or need_w):
        return None
    if _batched_applies(x, w):
        return None
    if (need_x and not _direct_input_grad_applies(x, w)) or (
        need_w and not _direct_weight_grad_applies(x, w)
    ):
        return None
    gy, x = np.ascontiguousarray(gy), np.ascontiguousarray(x)
    mask = np.ascontiguousarray(mask).reshape(gy.shape)
    return direct_grads(gy, x, w, stride, padding, dilation, need_x, need_w, mask)


# the direct kernels' arrays on 64-byte boundaries (False: where NumPy puts them, 16 bytes
# past one; benchmarks/conv_transpose_aligned.py times both)
_ALIGN = True


def _aligned(shape, dtype, make=np.empty) -> np.ndarray:
    """``make(shape, dtype)`` starting on a 64-byte boundary: the direct kernels' vector
    loads of weights, transposed images and partial sums then never straddle two cache
    lines (NumPy's own allocations start 16 bytes past one)."""
    if not _ALIGN:
        return make(shape, dtype)
    size = math.prod(shape)
    pad = 64 // np.dtype(dtype).itemsize
    raw = make(size + pad, dtype)
    skip = (-raw.ctypes.data % 64) // raw.itemsize
    return raw[skip : skip + size].reshape(shape)


def _aligned_workspace(name: str, rows: int, per: int, dtype) -> np.ndarray:
    """A (rows, per) ``workspace`` starting on a 64-byte boundary (rows of ``per`` elements,
    a multiple of 64 bytes here, so every row does)."""
    if not _ALIGN:
        return workspace(name, (rows, per), dtype)
    pad = 64 // np.dtype(dtype).itemsize
    raw = workspace(name, (rows * per + pad,), dtype)
    skip = (-raw.ctypes.data % 64) // raw.itemsize
    return raw[skip : skip + rows * per].reshape(rows, per)


@functools.lru_cache(maxsize=64)
def _placeholder(dtype) -> np.ndarray:
    """A (1, 1, 1, 1) array of ``dtype``, shared: the kernels' argument for an array not
    asked for (which they neither read nor write)."""
    return np.zeros((1, 1, 1, 1), dtype)


@functools.lru_cache(maxsize=256)
def _tap_offsets(o, kh, kw, hp, wp, dh, dw) -> np.ndarray:
    """The direct weight gradient's ``qoff`` (read-only, cached per shape): ``(oc*hp +
    i*dh)*wp + j*dw`` for ``q = (oc*kh + i)*kw + j``, zeros up to a multiple of 8."""
    nq = o * kh * kw
    qoff = np.zeros(-(-nq // 8) * 8, np.intp)
    oo, ii, jj = np.meshgrid(np.arange(o), np.arange(kh), np.arange(kw), indexing="ij")
    qoff[:nq] = ((oo * hp + ii * dh) * wp + jj * dw).reshape(-1)
    qoff.flags.writeable = False
    return qoff


def _padded_size(x, w, stride, dilation):
    """(hp, wp): the padded output gradient's planes that both direct gradients read."""
    h, wd = x.shape[2:]
    kh, kw = w.shape[2:]
    (sh, sw), (dh, dw) = stride, dilation
    return (h - 1) * sh + (kh - 1) * dh + 1, (-(-wd // _WB) * _WB - 1) * sw + (kw - 1) * dw + 1


def backward(gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w):
    return _gradients(gy, x, w, stride, padding, output_padding, dilation, groups, need_x,
                      need_w, False)[:2]  # fmt: skip


def backward_with_bias(gy, x, w, stride, padding, output_padding, dilation, groups, need_x,
                       need_w):  # fmt: skip
    """``backward`` plus the bias gradient: ``(gx, gw, gb)``, gb gy's per-channel sum added
    up as the direct gradient kernels read each image when they run, or summed by the
    batched backward's threads when it runs, else None (the op then sums it itself)."""
    return _gradients(gy, x, w, stride, padding, output_padding, dilation, groups, need_x,
                      need_w, True)  # fmt: skip


def _gradients(gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w,
               need_b):  # fmt: skip
    if not _supported(x, w, groups) or gy.size == 0 or not (need_x or need_w):
        return *col2im_cy.backward(
            gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w
        ), None  # fmt: skip
    gy, x = np.ascontiguousarray(gy), np.ascontiguousarray(x)
    if _batched_applies(x, w):
        return _batched_backward(gy, x, w, stride, padding, dilation, need_x, need_w, need_b)
    gb = None
    dx = need_x and _direct_input_grad_applies(x, w)
    dw = need_w and _direct_weight_grad_applies(x, w)
    gx = gw = None
    if dx or dw:
        gx, gw, *rest = direct_grads(gy, x, w, stride, padding, dilation, dx, dw, bias=need_b)
        gb = rest[0] if rest else None
    if (need_x and not dx) or (need_w and not dw):
        sx, sw = _shared(gy, x, w, stride, padding, dilation, need_x and not dx,
                         need_w and not dw)  # fmt: skip
        gx = sx if gx is None else gx
        gw = sw if gw is None else gw
    return gx, gw, gb


def _shared(gy, x, w, stride, padding, dilation, need_x, need_w):
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    rows = o * kh * kw
    nt = _team(n * c * h * wd * o * kh * kw)
    memory.check_fits("conv_transpose2d (phase) backward", {
        "column buffers": _growth("cols-t", (nt, rows, h * wd), x.dtype),
        "input gradient": x.nbytes if need_x else 0,
        "weight gradient": (nt + 1) * w.nbytes if need_w else 0,
    })  # fmt: skip
    gy = np.ascontiguousarray(gy)
    cols = workspace("cols-t", (nt, rows, h * wd), x.dtype)
    gx = np.empty_like(x) if need_x else np.empty((1, 1, 1, 1), x.dtype)
    parts = np.zeros((nt, c, rows), x.dtype) if need_w else np.empty((1, 1, 1), x.dtype)
    with cblas.single_threaded():
        backward_shared(gy, np.ascontiguousarray(x), w.reshape(c, rows), gx, parts, cols,
                        need_x, need_w, kh, kw, *stride, *padding, *dilation,
                        cblas.gemm_address(x.dtype), nt)  # fmt: skip
    gw = None
    if need_w:
        gw = (parts.sum(axis=0) if nt > 1 else parts[0]).reshape(w.shape)
    return (gx if need_x else None), gw
