"""Index and row helpers of the direct Numba kernels (conv, depthwise, conv_transpose).

The three direct kernels walk the same geometry: for a row of output positions ``o`` and a
tap at offset ``off`` (``j * dilation - padding``), the input position is
``o * stride + off``, and the positions whose input lies inside a row of ``w`` pixels form
one range ``[lo, hi)`` (:func:`col_range`), computed once per tap so the inner loops have no
bounds tests. Along that range they do one of three row updates, written here once:

- :func:`gather_axpy`   ``dst[lo:hi] += wv * src[lo*s+off : ... : s]`` (conv forward)
- :func:`scatter_axpy`  ``dst[lo*s+off : ... : s] += wv * src[lo:hi]`` (conv input gradient)
- :func:`gather_mul_acc` ``acc[lo:hi] += g[lo:hi] * src[lo*s+off : ... : s]`` (weight gradient)

Each takes zero-based views (indices provably >= 0, so Numba drops the negative-index
wraparound) and a stride-1 branch with contiguous slices, so LLVM vectorises the inner
loop; no fastmath (every loop is elementwise). The helpers are ``inline="always"``: Numba
copies them into each kernel before compiling, so a kernel runs the same code as when the
loops were written out in it. Numba's cache keys a kernel on its own file: after changing
this one, clear the compiled cache (``~/.cache/tapegrad/numba``) or touch the kernels.
"""

from __future__ import annotations

from numba import njit

from . import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)


@njit(cache=True, inline="always")
def col_range(off, s, w, wo):
    """Positions ``o`` in ``[0, wo)`` with ``0 <= o*s + off < w``, as ``(lo, hi)``
    (``hi == lo`` when there are none)."""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    hi = 0 if w - off <= 0 else (w - off + s - 1) // s
    return min(lo, wo), max(min(hi, wo), min(lo, wo))


@njit(cache=True, inline="always")
def tap_index(o, s, p, i, d, n):
    """The input index ``o*s - p + i*d`` of tap ``i`` at output position ``o``, or -1 when it
    falls outside ``[0, n)`` (a padding row)."""
    t = o * s - p + i * d
    return t if 0 <= t < n else -1


# Each helper writes its loop twice: in the stride-1 branch the slices are contiguous
# arrays (Numba types them 'C'), and the loop vectorises; one variable holding either slice
# would be typed 'A' (any layout) in both branches and lose that.


@njit(cache=True, inline="always")
def gather_axpy(dst, src, wv, lo, hi, off, s):
    """``dst[k] += wv * src[k*s + off]`` for k in ``[lo, hi)``."""
    if hi > lo:
        d = dst[lo:hi]
        if s == 1:
            x1 = src[lo + off : hi + off]
            for k in range(hi - lo):
                d[k] += wv * x1[k]
        else:
            xs = src[lo * s + off : (hi - 1) * s + off + 1 : s]
            for k in range(hi - lo):
                d[k] += wv * xs[k]


@njit(cache=True, inline="always")
def scatter_axpy(dst, src, wv, lo, hi, off, s):
    """``dst[k*s + off] += wv * src[k]`` for k in ``[lo, hi)``."""
    if hi > lo:
        g = src[lo:hi]
        if s == 1:
            d1 = dst[lo + off : hi + off]
            for k in range(hi - lo):
                d1[k] += wv * g[k]
        else:
            ds = dst[lo * s + off : (hi - 1) * s + off + 1 : s]
            for k in range(hi - lo):
                ds[k] += wv * g[k]


@njit(cache=True, inline="always")
def gather_mul_acc(acc, g, src, lo, hi, off, s):
    """``acc[k] += g[k] * src[k*s + off]`` for k in ``[lo, hi)``."""
    if hi > lo:
        a = acc[lo:hi]
        gg = g[lo:hi]
        if s == 1:
            x1 = src[lo + off : hi + off]
            for k in range(hi - lo):
                a[k] += gg[k] * x1[k]
        else:
            xs = src[lo * s + off : (hi - 1) * s + off + 1 : s]
            for k in range(hi - lo):
                a[k] += gg[k] * xs[k]
