"""NumPy reference transposed convolution: per filter tap, scatter x times the tap into
a strided slice of an uncropped output, then crop the padding."""

from __future__ import annotations

import numpy as np


def out_size(n: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def _full(n: int, k: int, s: int, op: int, d: int) -> int:
    # the uncropped output: every tap of every input pixel lands inside
    return (n - 1) * s + d * (k - 1) + 1 + op


def _tap(i, j, h, w, stride, dilation):
    return (
        slice(None),
        slice(None),
        slice(i * dilation[0], i * dilation[0] + stride[0] * (h - 1) + 1, stride[0]),
        slice(j * dilation[1], j * dilation[1] + stride[1] * (w - 1) + 1, stride[1]),
    )


def forward(x, w, b, stride, padding, output_padding, dilation, groups):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    ho = out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], output_padding[1], dilation[1])
    hf = _full(h, kh, stride[0], output_padding[0], dilation[0])
    wf = _full(wd, kw, stride[1], output_padding[1], dilation[1])
    yf = np.zeros((n, og * groups, hf, wf), dtype=x.dtype)
    for g in range(groups):
        xs = x[:, g * cg : (g + 1) * cg]
        ys = yf[:, g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                ys[_tap(i, j, h, wd, stride, dilation)] += np.einsum(
                    "nchw,co->nohw", xs, w[g * cg : (g + 1) * cg, :, i, j]
                )
    y = yf[:, :, padding[0] : padding[0] + ho, padding[1] : padding[1] + wo].copy()
    if b is not None:
        y += b[None, :, None, None]
    return y


def backward(gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    ho, wo = gy.shape[2:]
    hf = _full(h, kh, stride[0], output_padding[0], dilation[0])
    wf = _full(wd, kw, stride[1], output_padding[1], dilation[1])
    gyf = np.zeros((n, og * groups, hf, wf), dtype=gy.dtype)
    gyf[:, :, padding[0] : padding[0] + ho, padding[1] : padding[1] + wo] = gy
    gx = np.zeros_like(x) if need_x else None
    gw = np.zeros_like(w) if need_w else None
    for g in range(groups):
        cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for i in range(kh):
            for j in range(kw):
                patch = gyf[:, os_][_tap(i, j, h, wd, stride, dilation)]
                if need_x:
                    gx[:, cs] += np.einsum("nohw,co->nchw", patch, w[cs, :, i, j])
                if need_w:
                    gw[cs, :, i, j] = np.einsum("nchw,nohw->co", x[:, cs], patch)
    return gx, gw


def cropped_nonfinite(gw, x, stride, padding, out_hw, dilation, groups) -> None:
    """Give ``gw`` the NaN that PyTorch's weight gradient has where a NaN or Inf input
    pixel's tap lands in the cropped border of the output.

    PyTorch (and :func:`backward` here) multiply such a pixel by the zero gradient of the
    cropped border: ``inf * 0 = NaN`` in ``gw[c, :, i, j]``. The direct kernels skip the
    cropped taps, so they call this after their weight gradient; it costs one
    ``isfinite`` pass when the input is finite.
    """
    if np.isfinite(x).all():
        return
    c, og, kh, kw = gw.shape
    bad = ~np.isfinite(x).all(axis=0)  # (C, H, W): a non-finite value in some image
    h, w = bad.shape[1:]
    for i in range(kh):
        oh = np.arange(h) * stride[0] - padding[0] + i * dilation[0]
        rows = (oh < 0) | (oh >= out_hw[0])
        for j in range(kw):
            ow = np.arange(w) * stride[1] - padding[1] + j * dilation[1]
            cropped = rows[:, None] | ((ow < 0) | (ow >= out_hw[1]))[None, :]
            hit = (bad & cropped).any(axis=(1, 2))  # (C,)
            gw[hit, :, i, j] = np.nan
