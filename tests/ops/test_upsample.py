"""interpolate / Upsample: gradcheck, the PyTorch oracle (forward and gradient, float32
and float64), bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
from tapegrad import nn

VARIANTS = K.variants("upsample2d")

CASES = [
    ("nearest", None, {"scale_factor": 2}),
    ("nearest", None, {"size": (7, 5)}),
    ("nearest", None, {"scale_factor": (1.7, 0.6)}),
    ("nearest", None, {"scale_factor": 1.5, "recompute_scale_factor": True}),
    ("bilinear", False, {"scale_factor": 2}),
    ("bilinear", True, {"scale_factor": 2}),
    ("bilinear", False, {"size": (7, 3)}),
    ("bilinear", True, {"size": (1, 9)}),
    ("bilinear", None, {"scale_factor": (1.3, 2.6)}),
    ("bilinear", False, {"scale_factor": 1.3, "recompute_scale_factor": True}),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode,ac,kw", CASES[::2] + CASES[1::4])
def test_interpolate_gradcheck(variant, mode, ac, kw):
    x = tg.Tensor(np.random.default_rng(0).standard_normal((2, 2, 4, 3)), requires_grad=True)
    with K.use(upsample2d=variant):
        assert tg.gradcheck(lambda x: F.interpolate(x, mode=mode, align_corners=ac, **kw), [x])


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,ac,kw", CASES)
def test_interpolate_matches_torch(dtype, mode, ac, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 4)).astype(dtype)
    xt = tg.Tensor(x, requires_grad=True)
    y = F.interpolate(xt, mode=mode, align_corners=ac, **kw)
    gy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(tg.Tensor(gy))
    X = torch.tensor(x, requires_grad=True)
    Y = torch.nn.functional.interpolate(X, mode=mode, align_corners=ac, **kw)
    Y.backward(torch.tensor(gy))
    assert y.shape == tuple(Y.shape) and y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.data, Y.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(xt.grad.data, X.grad.numpy(), rtol=tol, atol=10 * tol)


@pytest.mark.torch
def test_upsample_module_and_3d_nearest_match_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((2, 3, 5)).astype(np.float32)
    got = nn.Upsample(scale_factor=2.5)(tg.Tensor(x))
    want = torch.nn.Upsample(scale_factor=2.5)(torch.from_numpy(x))
    np.testing.assert_array_equal(got.data, want.numpy())
    x4 = np.random.default_rng(3).standard_normal((1, 2, 3, 4)).astype(np.float32)
    up = nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True)
    ref = torch.nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(
        up(tg.Tensor(x4)).data, ref(torch.from_numpy(x4)).numpy(), rtol=1e-6, atol=1e-6
    )
    assert "scale_factor=2.5" in repr(nn.Upsample(scale_factor=2.5))


BAD = [
    ({"size": 4, "scale_factor": 2}, ValueError, "only one of size or scale_factor"),
    ({}, ValueError, "either size or scale_factor"),
    ({"scale_factor": 2, "mode": "bicubic"}, ValueError, "mode must be one of"),
    ({"scale_factor": 2, "align_corners": True}, ValueError, "align_corners can only"),
    ({"size": 4, "recompute_scale_factor": True}, ValueError, "not meaningful"),
    ({"size": (4, 0)}, ValueError, "size must be positive"),
    ({"size": (4, 4, 4)}, TypeError, "tuple of 2"),
    ({"scale_factor": -1.0}, ValueError, "positive and finite"),
    ({"scale_factor": 0.1}, ValueError, "empty output"),
    ({"scale_factor": "2"}, TypeError, "scale_factor must be"),
    ({"size": 2.5}, TypeError, "size must be"),
    ({"scale_factor": 2, "mode": "bilinear", "align_corners": 1}, TypeError, "align_corners"),
]


@pytest.mark.parametrize("kw,exc,msg", BAD)
def test_interpolate_bad_arguments(kw, exc, msg):
    x = tg.Tensor(np.zeros((1, 2, 3, 4), np.float32))
    with pytest.raises(exc, match=msg) as e:
        F.interpolate(x, **kw)
    assert str(e.value).startswith("interpolate: ")


def test_interpolate_bad_input():
    with pytest.raises(ValueError, match=r"interpolate: .*4-D .*\(2, 3\)"):
        F.interpolate(tg.Tensor(np.zeros((2, 3), np.float32)), scale_factor=2)
    with pytest.raises(ValueError, match=r"bilinear.*\(1, 2, 3\)"):
        F.interpolate(tg.Tensor(np.zeros((1, 2, 3), np.float32)), 4, mode="bilinear")
    with pytest.raises(TypeError, match="interpolate: input must be float32 or float64"):
        F.interpolate(tg.Tensor(np.zeros((1, 1, 2, 2), np.int64)), scale_factor=2)
