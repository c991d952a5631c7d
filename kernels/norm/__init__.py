"""Normalisation kernels: batch norm (per channel) and row norm (layer norm, group norm).

One module serves the ops ``batch_norm``, ``layer_norm`` and ``group_norm``. Statistics
are float64 (accumulated from values shifted by the first element, so a large mean does
not cancel the variance away); elementwise passes run in the input dtype.

Variant interface (float32/float64, C-contiguous, validated by ``tapegrad.ops.norm``)::

    bn_forward_train(x, w, b, eps, normalize_variance) -> (y, mean, invstd, var)
        x (N, C, S); w, b (C,) float64. Statistics per channel over (N, S): mean, the biased
        var, invstd = 1/sqrt(var + eps) (1 when not normalize_variance), all (C,) float64.
        y = (x - mean) * invstd * w + b.
    bn_forward_eval(x, scale, shift) -> y           y = x * scale[c] + shift[c]; scale, shift (C,)
    bn_backward(gy, x, mean, invstd, w, normalize_variance) -> (gx, gw, gb)
        The closed form (one fused pass per channel: two reductions, one elementwise pass):
        gb = sum gy, gw = sum gy * xhat, gx = w * invstd * (gy - gb/M - xhat * gw/M)
        (gx = w * (gy - gb/M) without variance normalisation); gw, gb (C,) float64.
    row_forward(x, w, b, eps) -> (y, mean, invstd)
        x (R, K): statistics per row; w, b (P, K) of x's dtype or None; row r uses affine row
        r % P (layer norm P = 1; group norm P = groups, weights expanded over the group).
    row_backward(gy, x, mean, invstd, w, need_affine) -> (gx, gw, gb)
        gw, gb (P, K) float64 sums over the rows sharing an affine row (None unless asked).
"""

from ..registry import register, set_rule

_P = __name__
for _op in ("batch_norm", "layer_norm", "group_norm"):
    register(_op, "reference", f"{_P}.reference")
    register(_op, "fused-numba", f"{_P}.fused_numba")
    register(_op, "fused-cython", f"{_P}.fused_cy")
    set_rule(_op, lambda sig: ["fused-numba", "fused-cython"])
