"""Conv layers: PyTorch's parameter names, shapes, default init bounds and outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tapegrad as tg

LAYERS = [
    ("Conv1d", (3, 4, 5), {"stride": 2, "padding": 1}),
    ("Conv2d", (3, 6, (3, 2)), {"padding": 1, "groups": 3}),
    ("Conv2d", (4, 8, 3), {"bias": False}),
    ("ConvTranspose1d", (4, 6, 3), {"stride": 2, "output_padding": 1, "groups": 2}),
    ("ConvTranspose2d", (4, 2, 4), {"stride": 2, "padding": 1}),
]


@pytest.mark.torch
@pytest.mark.parametrize("name, args, kwargs", LAYERS)
def test_layer_parameters_match_torch(name, args, kwargs):
    torch = pytest.importorskip("torch")
    ours = getattr(tg.nn, name)(*args, **kwargs)
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    mine = dict(ours.named_parameters())
    ref = {k: tuple(v.shape) for k, v in theirs.named_parameters()}
    assert {k: tuple(v.shape) for k, v in mine.items()} == ref
    # Kaiming-uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight
    w = mine["weight"].data
    fan_in = w.shape[1] * int(np.prod(w.shape[2:]))
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.5 * bound  # actually spread over the range, not tiny
    if "bias" in mine:
        assert np.abs(mine["bias"].data).max() <= bound


@pytest.mark.torch
@pytest.mark.parametrize("name, args, kwargs", LAYERS)
def test_layer_forward_matches_torch_with_copied_weights(name, args, kwargs):
    torch = pytest.importorskip("torch")
    ours = getattr(tg.nn, name)(*args, **kwargs)
    theirs = getattr(torch.nn, name)(*args, **kwargs).double()
    with torch.no_grad():
        for k, p in theirs.named_parameters():
            p.copy_(torch.tensor(dict(ours.named_parameters())[k].data.astype(np.float64)))
    spatial = (9,) if name.endswith("1d") else (7, 6)
    x = np.random.default_rng(0).standard_normal((2, args[0], *spatial)).astype(np.float32)
    y = ours(tg.Tensor(x)).data
    ty = theirs(torch.tensor(x, dtype=torch.float64)).detach().numpy()
    assert y.shape == ty.shape
    np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-5)


def test_layer_bad_groups():
    with pytest.raises(ValueError, match="ConvTranspose2d.*groups"):
        tg.nn.ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="Conv2d.*groups"):
        tg.nn.Conv2d(4, 3, 3, groups=2)
