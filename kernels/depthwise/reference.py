"""NumPy reference depthwise convolution: one strided slice per filter tap, broadcast multiply."""

from __future__ import annotations

import numpy as np

from ..conv.reference import _out_size, _tap


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    m = o // c
    ph, pw = padding
    ho = _out_size(h, kh, stride[0], ph, dilation[0])
    wo = _out_size(wd, kw, stride[1], pw, dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, c, m, ho, wo), dtype=x.dtype)
    wr = w.reshape(c, m, kh, kw)
    for i in range(kh):
        for j in range(kw):
            patch = xp[_tap(xp, i, j, ho, wo, stride, dilation)]  # (n, c, ho, wo)
            y += patch[:, :, None] * wr[None, :, :, i, j, None, None]
    y = y.reshape(n, o, ho, wo)
    if b is not None:
        y += b[None, :, None, None]
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    m = o // c
    ph, pw = padding
    ho, wo = gy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gy5 = gy.reshape(n, c, m, ho, wo)
    wr = w.reshape(c, m, kh, kw)
    gxp = np.zeros_like(xp) if need_x else None
    gw = np.zeros((c, m, kh, kw), dtype=x.dtype) if need_w else None
    for i in range(kh):
        for j in range(kw):
            tap = _tap(xp, i, j, ho, wo, stride, dilation)
            if need_w:
                gw[:, :, i, j] = np.einsum("ncmhw,nchw->cm", gy5, xp[tap])
            if need_x:
                gxp[tap] += np.einsum("ncmhw,cm->nchw", gy5, wr[:, :, i, j])
    gx = gxp[:, :, ph : ph + h, pw : pw + wd].copy() if need_x else None
    return gx, (gw.reshape(w.shape) if need_w else None)
