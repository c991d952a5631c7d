"""Fused normalisation kernels in Numba.

Batch norm: one prange iteration per channel does the whole channel (statistics pass,
then the elementwise pass while the channel is still in cache). Row norm: one iteration
per row; the backward walks fixed chunks of rows so the affine gradients need one
partial sum per chunk, not one per row.

``fastmath`` is limited to reassociation (and FMA contraction) so the float64 reduction
loops vectorise; the order of a float64 sum changes only in the last bits, and no NaN/Inf
assumptions are made.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)

_FM = {"reassoc", "contract", "nsz"}
_CHUNKS = 4  # row chunks in row_backward (fixed: results do not depend on thread count)


@njit(parallel=True, cache=True, fastmath=_FM)
def _bn_train(x, w, b, eps, normvar, y, mean, invstd, var, sc, relu, mask):
    n, c, s = x.shape
    m = n * s
    for ch in prange(c):
        k = np.float64(x[0, ch, 0])
        s1 = 0.0
        s2 = 0.0
        for i in range(n):
            for j in range(s):
                d = np.float64(x[i, ch, j]) - k
                s1 += d
                s2 += d * d
        md = s1 / m
        v = max(s2 / m - md * md, 0.0)
        mu = k + md
        inv = 1.0 / np.sqrt(v + eps) if normvar else 1.0
        mean[ch] = mu
        var[ch] = v
        invstd[ch] = inv
        # the elementwise pass runs in x's dtype (scalars stored in sc); it centres on the
        # mean rounded to that dtype, mf, so x - mf is exact (Sterbenz) and a large mean
        # does not cancel digits; the rounding of mf goes into the shift
        sc[ch, 0] = mu
        mf = sc[ch, 0]
        sc[ch, 1] = w[ch] * inv
        sc[ch, 2] = b[ch] - (mu - mf) * w[ch] * inv
        a = sc[ch, 1]
        o = sc[ch, 2]
        if relu:  # the ReLU and its mask in the same pass (PyTorch's: NaN and -0.0 pass)
            for i in range(n):
                for j in range(s):
                    u = (x[i, ch, j] - mf) * a + o
                    y[i, ch, j] = 0 if u < 0 else u
                # the mask from the row of y just written (still in L1): y <= 0 exactly
                # where u <= 0. Its own loop: one loop storing both floats and bytes ran
                # well below the speed of the two loops.
                for j in range(s):
                    mask[i, ch, j] = 0 if y[i, ch, j] <= 0 else 1
        else:
            for i in range(n):
                for j in range(s):
                    y[i, ch, j] = (x[i, ch, j] - mf) * a + o


# Eval batch norms below this many elements stay on the calling thread: a parallel
# region's start and its wait for a second (possibly descheduled) thread cost far more
# than one pass over a batch-1 layer's output.
_EVAL_SERIAL = 1 << 16


@njit(parallel=True, cache=True)
def _bn_eval(x, sc, sh, y):
    n, c, s = x.shape
    if n * c * s < _EVAL_SERIAL:
        for nc in range(n * c):
            i = nc // c
            ch = nc % c
            a = sc[ch]
            o = sh[ch]
            for j in range(s):
                y[i, ch, j] = x[i, ch, j] * a + o
        return
    for nc in prange(n * c):  # planes, not channels: eval has no per-channel reduction
        i = nc // c
        ch = nc % c
        a = sc[ch]
        o = sh[ch]
        for j in range(s):
            y[i, ch, j] = x[i, ch, j] * a + o


@njit(parallel=True, cache=True, fastmath=_FM)
def _bn_backward(gy, x, mean, invstd, w, normvar, gx, gw, gb, coef, mask, g3, acc):
    # with a ReLU's mask (non-empty): the sums pass applies the mask as it reads gy and
    # also stores the masked gradient in gx, which g3 (gx then, else gy) reads back while
    # the channel's planes are still in cache. The last pass is one loop for both cases:
    # the ReLU's backward rounds exactly as bn_backward of the masked gradient.
    n, c, s = x.shape
    m = n * s
    relu = mask.shape[0] != 0
    for ch in prange(c):
        mu = mean[ch]
        inv = invstd[ch]
        sg = 0.0
        sgx = 0.0
        if relu:  # two specialised loops: a flag test inside would keep LLVM from vectorising
            coef[ch, 5] = 0  # a zero of x's dtype (with a literal 0 the select is float64)
            zf = coef[ch, 5]
            for i in range(n):
                for j in range(s):
                    v = gy[i, ch, j]  # loaded unconditionally: the mask is a select
                    v = v if mask[i, ch, j] else zf
                    gx[i, ch, j] = v
                    g = np.float64(v)
                    sg += g
                    sgx += g * (np.float64(x[i, ch, j]) - mu)
        else:
            for i in range(n):
                for j in range(s):
                    g = np.float64(gy[i, ch, j])
                    sg += g
                    sgx += g * (np.float64(x[i, ch, j]) - mu)
        gb[ch] = sg
        gw[ch] = sgx * inv
        # gx = a*(gy - mean(gy)) - c1*(x - mf) + c0: the closed form with
        # xhat = (x - mu) * inv expanded, centred on the dtype-rounded mean mf as in the
        # forward (c0 = c1*(mu - mf) is that rounding). gy - mean(gy) comes first so a
        # batch of one gives exactly zero without variance normalisation.
        a = w[ch] * inv
        c1 = a * sgx * inv * inv / m if normvar else 0.0
        coef[ch, 3] = mu
        mf = coef[ch, 3]
        coef[ch, 4] = sg / m
        mg = coef[ch, 4]
        coef[ch, 0] = a
        coef[ch, 1] = c1
        coef[ch, 2] = c1 * (mu - mf)
        af = coef[ch, 0]
        cf = coef[ch, 1]
        of = coef[ch, 2]
        if acc.shape[0] != 0:  # a gradient the tape holds for x already, added here
            for i in range(n):
                for j in range(s):
                    v = af * (g3[i, ch, j] - mg) - cf * (x[i, ch, j] - mf) + of
                    gx[i, ch, j] = v + acc[i, ch, j]
        else:
            for i in range(n):
                for j in range(s):
                    gx[i, ch, j] = af * (g3[i, ch, j] - mg) - cf * (x[i, ch, j] - mf) + of


@njit(parallel=True, cache=True, fastmath=_FM)
def _row_forward(x, w, b, affine, eps, y, mean, invstd, rs):
    r, k = x.shape
    p = w.shape[0]
    for i in prange(r):
        sft = np.float64(x[i, 0])
        s1 = 0.0
        s2 = 0.0
        for j in range(k):
            d = np.float64(x[i, j]) - sft
            s1 += d
            s2 += d * d
        md = s1 / k
        v = max(s2 / k - md * md, 0.0)
        mu = sft + md
        inv = 1.0 / np.sqrt(v + eps)
        mean[i] = mu
        invstd[i] = inv
        rs[i, 2] = mu  # centre on the dtype-rounded mean (see _bn_train)
        mf = rs[i, 2]
        rs[i, 0] = inv
        rs[i, 1] = -(mu - mf) * inv
        a = rs[i, 0]
        o = rs[i, 1]
        if affine:
            q = i % p
            for j in range(k):
                y[i, j] = ((x[i, j] - mf) * a + o) * w[q, j] + b[q, j]
        else:
            for j in range(k):
                y[i, j] = (x[i, j] - mf) * a + o


@njit(parallel=True, cache=True, fastmath=_FM)
def _row_backward(gy, x, mean, invstd, w, affine, need, gx, gwp, gbp, rs):
    r, k = x.shape
    p = w.shape[0]
    nch = gwp.shape[0]
    for ci in prange(nch):
        lo = ci * r // nch
        hi = (ci + 1) * r // nch
        for i in range(lo, hi):
            q = i % p
            mu = mean[i]
            inv = invstd[i]
            rs[i, 4] = mu
            mf = rs[i, 4]
            rs[i, 0] = inv
            rs[i, 1] = -(mu - mf) * inv
            a = rs[i, 0]
            o = rs[i, 1]
            sg = 0.0
            sgx = 0.0
            # three specialised loops: a flag test inside would keep LLVM from vectorising
            if affine and need:
                gw_, gb_ = gwp[ci, q], gbp[ci, q]
                for j in range(k):
                    xh = (x[i, j] - mf) * a + o
                    g = gy[i, j] * w[q, j]
                    sg += g
                    sgx += g * xh
                    gw_[j] += gy[i, j] * xh
                    gb_[j] += gy[i, j]
            elif affine:
                for j in range(k):
                    xh = (x[i, j] - mf) * a + o
                    g = gy[i, j] * w[q, j]
                    sg += g
                    sgx += g * xh
            else:
                for j in range(k):
                    xh = (x[i, j] - mf) * a + o
                    g = gy[i, j]
                    sg += g
                    sgx += g * xh
            rs[i, 2] = sg / k
            rs[i, 3] = sgx / k
            mg = rs[i, 2]
            mgx = rs[i, 3]
            if affine:
                for j in range(k):
                    xh = (x[i, j] - mf) * a + o
                    gx[i, j] = a * (gy[i, j] * w[q, j] - mg - xh * mgx)
            else:
                for j in range(k):
                    xh = (x[i, j] - mf) * a + o
                    gx[i, j] = a * (gy[i, j] - mg - xh * mgx)


def _writeable(*arrays):
    """The arrays, read-only ones copied. Numba compiles a separate specialisation for a
    read-only array, and with reassociation allowed its sums may round differently: a
    copy keeps results bit-identical whether or not the input (say a memory-mapped
    dataset) is writeable."""
    return [a if a is None or a.flags.writeable else a.copy() for a in arrays]


_NO_MASK = np.empty((0, 0, 0), np.uint8)  # a call without a ReLU
BN_BACKWARD_ADDS = True  # bn_backward and bn_relu_backward take acc (see __init__)
_NO_ACC = {t: np.empty((0, 0, 0), t) for t in "fd"}  # a backward with nothing to add


def _forward_train(x, w, b, eps, normalize_variance, mask):
    """bn_forward_train's (y, mean, invstd, var); with a mask of x's shape (not _NO_MASK),
    the ReLU applied and its mask written in the same pass."""
    c = x.shape[1]
    if x.shape[0] * x.shape[2] == 0:  # an empty batch: no statistics to take
        return np.empty_like(x), np.zeros(c), np.ones(c), np.zeros(c)
    x, w, b = _writeable(x, w, b)
    y = np.empty_like(x)
    mean, invstd, var = np.empty(c), np.empty(c), np.empty(c)
    sc = np.empty((c, 3), x.dtype)
    nv, relu = bool(normalize_variance), mask is not _NO_MASK
    _bn_train(x, w, b, float(eps), nv, y, mean, invstd, var, sc, relu, mask)
    return y, mean, invstd, var


def bn_forward_train(x, w, b, eps, normalize_variance):
    return _forward_train(x, w, b, eps, normalize_variance, _NO_MASK)


def bn_relu_forward_train(x, w, b, eps, normalize_variance):
    mask = np.empty(x.shape, np.uint8)
    return (*_forward_train(x, w, b, eps, normalize_variance, mask), mask)


def bn_forward_eval(x, scale, shift):
    (x,) = _writeable(x)
    y = np.empty_like(x)
    _bn_eval(x, scale.astype(x.dtype), shift.astype(x.dtype), y)
    return y


def _backward(gy, x, mean, invstd, w, normalize_variance, mask, acc=None):
    """bn_backward's (gx, gw, gb); with a mask of x's shape (not _NO_MASK), of gy masked;
    with ``acc`` (x's shape and dtype), gx + acc."""
    gy, x, mean, invstd, w = _writeable(gy, x, mean, invstd, w)
    acc = _NO_ACC[x.dtype.char] if acc is None else _writeable(acc)[0]
    c = x.shape[1]
    gx = np.empty_like(x)
    gw, gb = np.empty(c), np.empty(c)
    coef = np.empty((c, 6), x.dtype)
    nv = bool(normalize_variance)
    g = gy if mask is _NO_MASK else gx  # gx holds the masked gradient after the sums pass
    _bn_backward(gy, x, mean, invstd, w, nv, gx, gw, gb, coef, mask, g, acc)
    return gx, gw, gb


def bn_backward(gy, x, mean, invstd, w, normalize_variance, acc=None):
    return _backward(gy, x, mean, invstd, w, normalize_variance, _NO_MASK, acc)


def bn_relu_backward(gy, mask, x, mean, invstd, w, normalize_variance, acc=None):
    if x.size == 0:
        c = x.shape[1]
        return np.empty_like(x), np.zeros(c), np.zeros(c)
    return _backward(gy, x, mean, invstd, w, normalize_variance, mask, acc)


def _affine(w, b, dtype):
    if w is None:
        return np.ones((1, 1), dtype), np.zeros((1, 1), dtype), False
    return w, b, True


def row_forward(x, w, b, eps):
    if x.shape[1] == 0:  # empty rows: no statistics to take
        return np.empty_like(x), np.zeros(x.shape[0]), np.ones(x.shape[0])
    x, w, b = _writeable(x, w, b)
    r = x.shape[0]
    w_, b_, affine = _affine(w, b, x.dtype)
    y = np.empty_like(x)
    mean, invstd = np.empty(r), np.empty(r)
    rs = np.empty((r, 3), x.dtype)
    _row_forward(x, w_, b_, affine, float(eps), y, mean, invstd, rs)
    return y, mean, invstd


def row_backward(gy, x, mean, invstd, w, need_affine):
    gy, x, mean, invstd, w = _writeable(gy, x, mean, invstd, w)
    r, k = x.shape
    w_, _, affine = _affine(w, w, x.dtype)
    need = affine and bool(need_affine)
    nch = max(1, min(r, _CHUNKS))
    shape = (nch, w_.shape[0], k) if need else (nch, 1, 1)
    gwp, gbp = np.zeros(shape, x.dtype), np.zeros(shape, x.dtype)
    gx = np.empty_like(x)
    rs = np.empty((r, 5), x.dtype)
    _row_backward(gy, x, mean, invstd, w_, affine, need, gx, gwp, gbp, rs)
    if not need:
        return gx, None, None
    return gx, gwp.sum(axis=0, dtype=np.float64), gbp.sum(axis=0, dtype=np.float64)
