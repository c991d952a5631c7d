"""NumPy reference convolution: one strided slice per filter tap, summed with einsum.

Slow and obviously right: the ground truth every other variant is tested against.
"""

from __future__ import annotations

import numpy as np


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _tap(xp: np.ndarray, i: int, j: int, ho: int, wo: int, stride, dilation) -> tuple:
    sh, sw = stride
    dh, dw = dilation
    return (
        slice(None),
        slice(None),
        slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
        slice(j * dw, j * dw + sw * (wo - 1) + 1, sw),
    )


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ph, pw = padding
    ho = _out_size(h, kh, stride[0], ph, dilation[0])
    wo = _out_size(wd, kw, stride[1], pw, dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, o, ho, wo), dtype=x.dtype)
    og = o // groups
    for g in range(groups):
        xs = xp[:, g * cg : (g + 1) * cg]
        ws = w[g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[_tap(xs, i, j, ho, wo, stride, dilation)]
                y[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        y += b[None, :, None, None]
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ph, pw = padding
    ho, wo = gy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gxp = np.zeros_like(xp) if need_x else None
    gw = np.zeros_like(w) if need_w else None
    og = o // groups
    for g in range(groups):
        cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for i in range(kh):
            for j in range(kw):
                tap = _tap(xp, i, j, ho, wo, stride, dilation)
                if need_w:
                    gw[os_, :, i, j] = np.einsum("nohw,nchw->oc", gy[:, os_], xp[:, cs][tap])
                if need_x:
                    gxp[:, cs][tap] += np.einsum("nohw,oc->nchw", gy[:, os_], w[os_, :, i, j])
    gx = gxp[:, :, ph : ph + h, pw : pw + wd].copy() if need_x else None
    return gx, gw
