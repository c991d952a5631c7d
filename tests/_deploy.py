"""Shared pieces of the deployment tests: models of each exportable layer, trained-looking
weights (batch-norm statistics away from 0 and 1) and the relative error used throughout."""

from __future__ import annotations

import numpy as np

import tapegrad as tg
from tapegrad import nn, zoo
from tapegrad.autograd import no_grad
from tapegrad.nn import functional as F
from tapegrad.ops.shape import Concat


class Fn(nn.Module):
    """A module whose forward is ``fn(x)`` (functional ops inside a model)."""

    def __init__(self, fn, *children) -> None:
        super().__init__()
        self.fn = fn
        for i, c in enumerate(children):
            setattr(self, f"m{i}", c)

    def forward(self, x):
        return self.fn(self, x)


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give batch norms running statistics and affine parameters that are not the identity."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.running_mean is not None:
            m.running_mean.data[...] = rng.normal(0, 0.3, m.running_mean.shape)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            for p in (m.weight, m.bias):
                if p is not None:
                    p.data[...] = rng.normal(0.5 if p is m.weight else 0, 0.3, p.shape)
    return model


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref| (0 when both are all zero)."""
    scale = float(np.abs(ref).max())
    diff = float(np.abs(np.asarray(got, np.float64) - ref).max())
    return diff / scale if scale else diff


def eval_forward(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with no_grad():
        return model(tg.Tensor(x)).data


def zoo_case(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """A zoo model (trained-looking) and one image's (C, H, W)."""
    side = zoo.DEFAULT_INPUT[name]
    return perturb(zoo.get_model(name, in_channels=1, input_size=side)), (1, side, side)


# (id, builder, one sample's shape); every exportable layer and functional op appears
LAYER_CASES = [
    ("conv", lambda: nn.Conv2d(3, 4, 3), (3, 7, 7)),
    ("conv_stride_pad", lambda: nn.Conv2d(3, 4, (3, 2), stride=2, padding=(1, 0)), (3, 8, 7)),
    ("conv_dil_groups", lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (4, 7, 6)),
    ("conv_same_even", lambda: nn.Conv2d(3, 3, 4, padding="same", bias=False), (3, 6, 6)),
    ("depthwise", lambda: nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4), (4, 9, 9)),
    ("conv1d", lambda: nn.Conv1d(3, 5, 3, stride=2, padding=1), (3, 11)),
    ("conv1d_depthwise", lambda: nn.Conv1d(4, 4, 3, groups=4), (4, 9)),
    (
        "conv_transpose",
        lambda: nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
        (4, 5, 5),
    ),
    (
        "conv_transpose_groups_dil",
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, dilation=2),
        (4, 4, 5),
    ),
    ("conv_transpose1d", lambda: nn.ConvTranspose1d(3, 4, 4, stride=2, padding=1), (3, 6)),
    ("batchnorm2d", lambda: nn.BatchNorm2d(3), (3, 4, 4)),
    ("batchnorm2d_noaffine", lambda: nn.BatchNorm2d(3, affine=False), (3, 4, 4)),
    ("batchnorm1d", lambda: nn.BatchNorm1d(5), (5,)),
    ("batchnorm1d_3d", lambda: nn.BatchNorm1d(5), (5, 6)),
    ("layernorm", lambda: nn.LayerNorm(6), (4, 6)),
    ("layernorm_2axes", lambda: nn.LayerNorm((4, 6)), (4, 6)),
    ("layernorm_noaffine", lambda: nn.LayerNorm(6, elementwise_affine=False), (4, 6)),
    ("groupnorm", lambda: nn.GroupNorm(2, 4), (4, 5, 5)),
    ("groupnorm_noaffine", lambda: nn.GroupNorm(2, 4, affine=False), (4, 3, 3)),
    ("maxpool", lambda: nn.MaxPool2d(2), (2, 6, 6)),
    ("maxpool_pad", lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 7, 7)),
    ("maxpool_ceil", lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True), (2, 8, 8)),
    ("maxpool_dilation", lambda: nn.MaxPool2d(2, stride=1, dilation=2), (2, 6, 6)),
    ("avgpool", lambda: nn.AvgPool2d(2), (2, 6, 6)),
    ("avgpool_pad", lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 7, 7)),
    (
        "avgpool_nopadcount",
        lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        (2, 7, 7),
    ),
    ("avgpool_ceil", lambda: nn.AvgPool2d(2, ceil_mode=True), (2, 7, 7)),
    ("adaptive_global", lambda: nn.AdaptiveAvgPool2d(1), (3, 5, 5)),
    ("adaptive_even", lambda: nn.AdaptiveAvgPool2d(2), (3, 6, 6)),
    ("upsample_nearest2x", lambda: nn.Upsample(scale_factor=2), (3, 4, 5)),
    ("upsample_nearest_size", lambda: nn.Upsample(size=(7, 9)), (2, 4, 5)),
    ("upsample_nearest_scale", lambda: nn.Upsample(scale_factor=(1.5, 2.5)), (2, 4, 6)),
    ("upsample_nearest_1d", lambda: nn.Upsample(scale_factor=3), (2, 5)),
    ("upsample_bilinear", lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (3, 4, 5)),
    (
        "upsample_bilinear_corners",
        lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        (3, 4, 5),
    ),
    ("upsample_bilinear_size", lambda: nn.Upsample(size=(9, 6), mode="bilinear"), (2, 4, 5)),
    (
        "upsample_bilinear_scale",
        lambda: nn.Upsample(scale_factor=(1.5, 2.3), mode="bilinear"),
        (2, 4, 6),
    ),
    (
        "upsample_bilinear_corners_size",
        lambda: nn.Upsample(size=(7, 3), mode="bilinear", align_corners=True),
        (2, 4, 5),
    ),
    ("linear", lambda: nn.Linear(5, 3), (5,)),
    ("linear_3d", lambda: nn.Linear(5, 3), (4, 5)),
    ("linear_nobias", lambda: nn.Linear(5, 3, bias=False), (5,)),
    ("relu", lambda: nn.ReLU(), (3, 4)),
    ("sigmoid", lambda: nn.Sigmoid(), (3, 4)),
    ("tanh", lambda: nn.Tanh(), (3, 4)),
    ("flatten", lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), (3, 2, 2)),
    ("dropout", lambda: nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 2)), (4,)),
    ("dropout2d", lambda: nn.Sequential(nn.Dropout2d(0.3), nn.Conv2d(2, 2, 1)), (2, 3, 3)),
    ("softmax", lambda: Fn(lambda m, x: F.softmax(x, dim=1)), (5,)),
    ("log_softmax", lambda: Fn(lambda m, x: F.log_softmax(x, dim=-1)), (3, 5)),
    (
        "add_residual",
        lambda: Fn(lambda m, x: m.m0(x) + x, nn.Conv2d(3, 3, 3, padding=1)),
        (3, 4, 4),
    ),
    ("mul_sub_div", lambda: Fn(lambda m, x: (x * 2.0 - x.sigmoid()) / 3.0), (3, 4)),
    ("pow_exp_sqrt", lambda: Fn(lambda m, x: (x**2).exp().sqrt() + x.abs().log().tanh()), (3,)),
    ("neg_max", lambda: Fn(lambda m, x: -x.max(axis=1)), (3, 4)),
    (
        "cat",
        lambda: Fn(lambda m, x: Concat.apply(m.m0(x), x.relu(), axis=1), nn.Conv2d(2, 3, 1)),
        (2, 3, 3),
    ),
    ("mean", lambda: Fn(lambda m, x: x.mean(axis=(2, 3))), (3, 4, 5)),
    ("sum_keepdims", lambda: Fn(lambda m, x: x.sum(axis=1, keepdims=True)), (3, 4)),
    (
        "permute_reshape",
        lambda: Fn(lambda m, x: x.permute(0, 2, 1).reshape(x.shape[0], -1)),
        (3, 4),
    ),
    ("matmul", lambda: Fn(lambda m, x: x @ m.m0.weight.T, nn.Linear(4, 3)), (2, 4)),
]
