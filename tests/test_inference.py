"""tapegrad.inference.optimize: folded batch norms, fused conv + bias + ReLU, no tape;
outputs equal to the model's eval forward."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import inference, nn, zoo
from tapegrad.nn import functional as F

from ._deploy import LAYER_CASES, Fn, eval_forward, perturb, rel_err, zoo_case

TOL = 1e-5


@pytest.mark.parametrize("name", zoo.available())
@pytest.mark.parametrize("fuse", [True, False])
def test_zoo_models_match_eval_forward(name, fuse):
    model, sample = zoo_case(name)
    opt = inference.optimize(model, fuse=fuse)
    rng = np.random.default_rng(5)
    for n in (1, 7, 1):  # back to a shape seen before: its plan is reused
        x = rng.standard_normal((n, *sample)).astype(np.float32)
        y = opt(tg.Tensor(x))
        assert isinstance(y, tg.Tensor) and not y.requires_grad and y._node is None
        assert rel_err(y.data, eval_forward(model, x)) < TOL


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_each_layer_matches_eval_forward(case):
    _, build, sample = case
    tg.manual_seed(3)
    model = perturb(build())
    opt = inference.optimize(model)
    x = np.random.default_rng(2).standard_normal((3, *sample)).astype(np.float32)
    assert rel_err(opt(x).data, eval_forward(model, x)) < TOL


def test_batch_norm_folded_relu_fused_dropout_gone():
    model, sample = zoo_case("vgg_small")
    steps = inference.optimize(model).describe(np.zeros((2, *sample), np.float32))
    assert not any("batch norm" in s or "Dropout" in s for s in steps)
    assert steps.count("conv + bias + relu") == 4 and "linear + relu" in steps
    steps = inference.optimize(model, fold=False).describe(np.zeros((2, *sample), np.float32))
    assert steps.count("batch norm + relu") == 4
    mobile, sample = zoo_case("mobilenet_small")
    steps = inference.optimize(mobile).describe(np.zeros((1, *sample), np.float32))
    assert "depthwise conv + bias + relu" in steps and "pointwise conv + bias + relu" in steps


def test_fold_arithmetic_on_conv_and_linear():
    tg.manual_seed(0)
    model = perturb(
        nn.Sequential(
            nn.Conv2d(2, 3, 3, bias=True),
            nn.BatchNorm2d(3),
            nn.Flatten(),
            nn.Linear(12, 4),
            nn.BatchNorm1d(4),
        )  # fmt: skip
    )
    x = np.random.default_rng(0).standard_normal((5, 2, 4, 4)).astype(np.float32)
    opt = inference.optimize(model)
    records, tensors, outs = opt.trace(x)
    assert [r.fn.__name__ for r in records] == ["Conv2d", "Reshape", "Linear"]
    assert rel_err(opt(x).data, eval_forward(model, x)) < TOL


FOLD_CASES = [
    ("conv1d", lambda: nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU()),
     (3, 9), ["Reshape", "Reshape", "Conv2d", "Reshape", "ReLU"]),
    ("conv1d_nobias_groups", lambda: nn.Sequential(nn.Conv1d(4, 6, 3, groups=2, bias=False),
     nn.BatchNorm1d(6)), (4, 8), ["Reshape", "Reshape", "Conv2d", "Reshape"]),
    ("conv_transpose2d_groups", lambda: nn.Sequential(
        nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(6)),
     (4, 5, 5), ["ConvTranspose2d"]),
    ("conv_transpose2d_nobias", lambda: nn.Sequential(
        nn.ConvTranspose2d(3, 5, 2, stride=2, bias=False), nn.BatchNorm2d(5), nn.ReLU()),
     (3, 4, 4), ["ConvTranspose2d", "ReLU"]),
    ("conv_transpose1d", lambda: nn.Sequential(nn.ConvTranspose1d(3, 4, 4, stride=2),
     nn.BatchNorm1d(4)), (3, 6), None),
]  # fmt: skip


@pytest.mark.parametrize("name,build,sample,kinds", FOLD_CASES, ids=[c[0] for c in FOLD_CASES])
def test_batch_norm_folds_after_conv1d_and_conv_transpose(name, build, sample, kinds):
    tg.manual_seed(1)
    model = perturb(build())
    x = np.random.default_rng(5).standard_normal((3, *sample)).astype(np.float32)
    opt = model.fuse()
    assert model.training  # fuse() works on a copy in eval mode; the model is left as it is
    records, _, _ = opt.trace(x)
    assert not any(r.fn.__name__ == "BatchNorm" for r in records)
    if kinds is not None:
        assert [r.fn.__name__ for r in records] == kinds
    for fused in (opt, model.fuse(fuse=False)):
        assert rel_err(fused(x).data, eval_forward(model, x)) < TOL


@pytest.mark.parametrize("serial_macs", [0, 10**12])
def test_threaded_and_serial_steps_agree(serial_macs):
    model, sample = zoo_case("vgg_small")
    x = np.random.default_rng(1).standard_normal((1, *sample)).astype(np.float32)
    opt = model.fuse(serial_macs=serial_macs)
    assert opt.plan(x).serial_macs == serial_macs
    assert rel_err(opt(x).data, eval_forward(model, x)) < TOL


def test_default_plan_is_the_faster_of_threaded_and_serial():
    model, sample = zoo_case("vgg_small")
    x = np.random.default_rng(2).standard_normal((1, *sample)).astype(np.float32)
    opt = model.fuse()
    assert opt.plan(x).serial_macs in (inference.SERIAL_MACS, inference.ALL_SERIAL)
    assert rel_err(opt(x).data, eval_forward(model, x)) < TOL
    # a plan with every step serial has nothing to race
    small = np.zeros((1, 1, 28, 28), np.float32)
    lenet = zoo.get_model("lenet5").fuse()
    assert not lenet.plan(small).threaded and lenet.plan(small).serial_macs == inference.SERIAL_MACS


def test_long_forward_is_decided_by_one_run_each(monkeypatch):
    monkeypatch.setattr(inference, "RACE_SECONDS", 0.0)
    model, sample = zoo_case("vgg_small")
    x = np.random.default_rng(3).standard_normal((2, *sample)).astype(np.float32)
    runs = []
    real = inference._Plan.run
    monkeypatch.setattr(inference._Plan, "run", lambda p, a: runs.append(p) or real(p, a))
    opt = model.fuse()
    plan = opt.plan(x)
    assert len(runs) == 4 and plan in runs  # a warm and a timed run of each plan
    assert plan.serial_macs in (inference.SERIAL_MACS, inference.ALL_SERIAL)
    assert rel_err(opt(x).data, eval_forward(model, x)) < TOL


def test_fuse_is_optimize():
    model, sample = zoo_case("lenet5")
    x = np.random.default_rng(0).standard_normal((2, *sample)).astype(np.float32)
    fused = model.fuse()
    assert isinstance(fused, inference.InferenceModel)
    assert fused.describe(x) == inference.optimize(model).describe(x)
    np.testing.assert_array_equal(fused(x).data, inference.optimize(model)(x).data)


def test_bn_shared_input_or_after_residual_is_not_folded():
    tg.manual_seed(1)
    conv, bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)
    model = perturb(Fn(lambda m, x: m.m1(m.m0(x)) + m.m0(x) * 0 + m.m0(x), conv, bn))
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 3)).astype(np.float32)
    assert rel_err(inference.optimize(model)(x).data, eval_forward(model, x)) < TOL
    shared = perturb(Fn(lambda m, x: (lambda y: m.m1(y) + y)(m.m0(x)), conv, bn))
    records, _, _ = inference.optimize(shared).trace(x)
    assert "BatchNorm" in [r.fn.__name__ for r in records]  # the conv output is read twice
    assert rel_err(inference.optimize(shared)(x).data, eval_forward(shared, x)) < TOL


def test_results_are_not_overwritten_and_model_is_untouched():
    model, sample = zoo_case("resnet8")
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = inference.optimize(model)
    assert model.training
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((2, *sample)).astype(np.float32) for _ in range(2))
    y1 = opt(x1).data.copy()
    y1_view = opt(x1).data
    opt(x2)
    assert np.array_equal(y1, y1_view)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    for p in model.parameters():
        p.data[...] = 0  # later changes to the original do not reach the copy
    assert np.array_equal(opt(x1).data, y1)
    x1[...] = 0
    assert not np.array_equal(opt(x1).data, y1)


def test_bad_input():
    opt = inference.optimize(nn.Linear(3, 2))
    with pytest.raises(TypeError, match="InferenceModel: input 0 must be a float"):
        opt(np.zeros((1, 3), np.int64))
    with pytest.raises(TypeError, match="InferenceModel"):
        opt()
    with pytest.raises(ValueError, match="linear"):
        opt(np.zeros((1, 4), np.float32))


def test_functional_ops_run_without_tape():
    model = Fn(lambda m, x: F.softmax(x * 2.0 + 1.0, dim=1).log() - x.mean(axis=1, keepdims=True))
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    ref = eval_forward(model, x)
    xt = tg.Tensor(x, requires_grad=True)
    y = inference.optimize(model)(xt)
    assert y._node is None and rel_err(y.data, ref) < TOL


def test_large_layers_take_the_parallel_kernels_and_agree():
    tg.manual_seed(4)
    model = perturb(
        nn.Sequential(
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, groups=4),
            nn.ReLU(),
        )  # fmt: skip
    )
    x = np.random.default_rng(0).standard_normal((6, 8, 48, 48)).astype(np.float32)
    opt = inference.optimize(model)
    assert rel_err(opt(x).data, eval_forward(model, x)) < TOL
    small = x[:1, :, :12, :12]
    assert rel_err(opt(small).data, eval_forward(model, small)) < TOL


def test_load_model_from_bare_state_dict_and_errors(tmp_path):
    tg.manual_seed(0)
    model = perturb(zoo.get_model("vgg_small", in_channels=3, num_classes=7, width=4))
    bare = tmp_path / "bare.safetensors"
    tg.save(dict(model.state_dict()), bare)
    with pytest.raises(ValueError, match="does not say which zoo model"):
        inference.load_model(bare)
    with pytest.raises(ValueError, match="does not fit vgg_small"):
        inference.load_model(bare, model="vgg_small")  # width 4 is not the default 32
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        inference.load_model(bare, model="nope")
    with pytest.raises(FileNotFoundError, match="no last.safetensors"):
        inference.load_model(tmp_path)
    tg.save({"model": {}, "config": {"model": "lenet5"}}, tmp_path / "empty.safetensors")
    with pytest.raises(ValueError, match="no layer weights"):
        inference.load_model(tmp_path / "empty.safetensors")
    lenet = perturb(zoo.get_model("lenet5", in_channels=3, num_classes=4))
    tg.save(dict(lenet.state_dict()), tmp_path / "lenet.safetensors")
    got, info = inference.load_model(tmp_path / "lenet.safetensors", model="lenet5")
    assert (info["in_channels"], info["num_classes"], info["input_size"]) == (3, 4, 28)
    assert not got.training
    x = np.random.default_rng(0).standard_normal((2, 3, 28, 28)).astype(np.float32)
    assert np.array_equal(eval_forward(got, x), eval_forward(lenet, x))


@pytest.mark.parametrize("shape", [(1, 2, 6, 6), (6, 8, 48, 48)], ids=["serial", "parallel"])
def test_fused_relu_keeps_nan_and_negative_zero_like_the_eval_forward(shape):
    c = shape[1]
    model = nn.Sequential(
        nn.Conv2d(c, c, 1, bias=True),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c * shape[2] * shape[3], 3),
        nn.ReLU(),
    )
    model.eval()
    with tg.no_grad():
        model[0].weight.data[...] = np.eye(c, dtype=np.float32).reshape(c, c, 1, 1)
        model[0].bias.data[...] = 0.0
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 0, 1] = -0.0
    ref = eval_forward(model, x)
    for fold in (True, False):
        y = inference.optimize(model, fold=fold)(x).data
        assert np.array_equal(np.isnan(y), np.isnan(ref)) and np.isnan(y).any()
    conv = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.ReLU())
    with tg.no_grad():
        conv[0].weight.data[...] = np.eye(c, dtype=np.float32).reshape(c, c, 1, 1)
    y = inference.optimize(conv)(x).data
    ref = eval_forward(conv, x)
    assert np.isnan(y[0, 0, 0, 0]) and np.signbit(y[0, 0, 0, 1]) == np.signbit(ref[0, 0, 0, 1])


CT_CASES = [
    # (id, layer, sample, batch)
    (
        "s2_k3_op1",
        lambda: nn.ConvTranspose2d(5, 3, 3, stride=2, padding=1, output_padding=1),
        (5, 4, 5),
        1,
    ),
    ("s3_k4_p2", lambda: nn.ConvTranspose2d(3, 4, 4, stride=3, padding=2), (3, 5, 4), 1),
    ("s1_dil2_nobias", lambda: nn.ConvTranspose2d(3, 2, 3, dilation=2, bias=False), (3, 4, 3), 1),
    ("batch_s2_k4", lambda: nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), (4, 5, 5), 3),
    ("groups", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), (4, 3, 4), 1),
]


@pytest.mark.parametrize("case", CT_CASES, ids=[c[0] for c in CT_CASES])
@pytest.mark.parametrize("act", ["relu", "sigmoid", "none"])
def test_conv_transpose_step_with_its_activation_matches_eval_forward(case, act):
    _, build, sample, n = case
    tg.manual_seed(4)
    tail = {"relu": [nn.ReLU()], "sigmoid": [nn.Sigmoid()], "none": []}[act]
    model = nn.Sequential(build(), *tail)
    x = 3 * np.random.default_rng(6).standard_normal((n, *sample)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    x[-1, -1, -1, -1] = 1e4  # sigmoid saturates to exactly 0 and 1 without overflow
    ref = eval_forward(model, x)
    opt = inference.optimize(model)
    steps = opt.describe(x)
    assert steps == ["conv_transpose + bias" + ("" if act == "none" else f" + {act}")]
    y = opt(x).data
    assert np.array_equal(np.isnan(y), np.isnan(ref)) and np.isnan(y).any()
    ok = ~np.isnan(ref)
    assert rel_err(y[ok], ref[ok]) < TOL


def test_conv_autoencoder_runs_fused_transposed_convolutions():
    model, sample = zoo_case("conv_autoencoder")
    steps = inference.optimize(model).describe(np.zeros((1, *sample), np.float32))
    assert steps == [
        "conv + bias + relu",
        "conv + bias + relu",
        "conv_transpose + bias + relu",
        "conv_transpose + bias + sigmoid",
    ]


def test_relu_steps_keep_negative_zero_like_f_relu():
    # a ReLU of its own (on the graph's input), after an add, after a linear and after a
    # batch's conv on the threads: an exact -0.0 stays -0.0 (as in F.relu), NaN stays NaN
    lin = nn.Linear(3, 3, bias=False)
    conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
    with tg.no_grad():
        lin.weight.data[...] = np.eye(3, dtype=np.float32)
    model = Fn(
        lambda m, x: (
            F.relu(m.m0(x.flatten(1)[:, :3])),
            F.relu(x + x),
            F.relu(m.m1(x)),
            F.relu(x),
        ),
        lin,
        conv,
    )
    model.eval()
    x = -np.random.default_rng(3).uniform(0.5, 1.0, (4, 3, 6, 6)).astype(np.float32)
    x[:, :, 0, :2] = -0.0
    x[1, 2, 3, 3] = np.nan
    with tg.no_grad():
        ref = [t.data for t in model(tg.Tensor(x))]
    assert np.signbit(ref[1]).any() and np.signbit(ref[3]).any()
    for serial_macs in (0, None):
        opt = inference.optimize(model, serial_macs=serial_macs)
        assert "relu" in opt.describe(x) and "add + relu" in opt.describe(x)
        for y, r in zip(opt(x), ref):
            assert np.array_equal(np.signbit(y.data), np.signbit(r))
            assert np.array_equal(np.isnan(y.data), np.isnan(r))


def _every_kernel_model() -> nn.Module:
    """Batch-1 conv steps with several candidate kernels: 3x3 stride 1 (the GEMM, Winograd
    F(2x2) and F(4x4), blocked), 1x1 (the GEMM, pointwise), depthwise (direct, serial)."""
    tg.manual_seed(7)
    return perturb(
        nn.Sequential(
            nn.Conv2d(6, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.Conv2d(16, 16, 3, padding=1, groups=16),
            nn.ReLU(),
            nn.Conv2d(16, 24, 1),
            nn.ReLU(),
        )  # fmt: skip
    )


def test_every_candidate_kernel_of_a_batch1_step_matches_eval_forward(monkeypatch):
    # each conv step of a one-image plan runs whichever candidate its tuning picked; every
    # candidate must give the eval forward's output, with finite input and with NaN / inf;
    # two threads, so the threaded plan splits one image's Winograd tiles between them
    monkeypatch.setattr(inference.threads, "get_num_threads", lambda: 2)
    model = _every_kernel_model()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 6, 18, 18)).astype(np.float32)
    bad = x.copy()
    bad[0, 1, 4, 5], bad[0, 3, 10, 2] = np.nan, np.inf
    ref, ref_bad = eval_forward(model, x), eval_forward(model, bad)
    assert np.isnan(ref_bad).any()
    for serial_macs in (0, None):
        opt = inference.optimize(model, serial_macs=serial_macs)
        plan = opt.plan(x)
        names = {i: [c[0] for c in ch.cands] for i, ch in plan.choices.items()}
        seen = {n for ns in names.values() for n in ns}
        assert {"gemm", "blocked-cython", "pointwise-cython", "depthwise-serial"} <= seen
        assert {"winograd-cython F(2x2)", "winograd-cython F(4x4)"} <= seen
        tuned = plan.kernels
        for i, choice in plan.choices.items():
            for k in range(len(choice.cands)):
                choice.index = k
                assert rel_err(opt(x).data, ref) < TOL, choice.name
                with np.errstate(invalid="ignore"):  # NaN met in a GEMM
                    y = opt(bad).data
                assert np.array_equal(np.isnan(y), np.isnan(ref_bad)), choice.name
                ok = np.isfinite(ref_bad)
                assert rel_err(y[ok], ref_bad[ok]) < TOL, choice.name
            choice.index = names[i].index(tuned[i])  # back to the tuned one
        lines = opt.describe(x, kernels=True)
        assert lines[0] == f"conv + bias + relu [{tuned[0]}]"


def test_batch_steps_run_the_families_variants():
    # a batch above serial_macs hands each conv to the variant auto picks (winograd with
    # its weights transformed once), batch norm and ReLU to the families' passes
    model = _every_kernel_model()
    x = np.random.default_rng(9).standard_normal((3, 6, 18, 18)).astype(np.float32)
    x[1, 2, 3, 4] = np.nan
    ref = eval_forward(model, x)
    unfolded = nn.Sequential(nn.BatchNorm2d(6), nn.ReLU())
    perturb(unfolded)
    ref_bn = eval_forward(unfolded, x)
    for serial_macs in (0, 10**12):
        opt = inference.optimize(model, serial_macs=serial_macs)
        with np.errstate(invalid="ignore"):  # NaN met in a GEMM
            kernels = opt.plan(x).kernels
            y = opt(x).data
        assert ("gemm" in kernels.values()) == (serial_macs != 0)
        assert np.array_equal(np.isnan(y), np.isnan(ref))
        ok = ~np.isnan(ref)
        assert rel_err(y[ok], ref[ok]) < TOL
        bn = inference.optimize(unfolded, serial_macs=serial_macs)
        assert bn.describe(x) == ["batch norm + relu"]
        y = bn(x).data
        assert np.array_equal(np.isnan(y), np.isnan(ref_bn))
        assert rel_err(y[~np.isnan(y)], ref_bn[~np.isnan(y)]) < TOL


def test_one_row_linear_steps_match_eval_forward_on_either_candidate():
    tg.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(600, 200), nn.ReLU(), nn.Linear(200, 7))
    x = np.random.default_rng(3).standard_normal((1, 6, 10, 10)).astype(np.float32)
    x[0, 0, 0, 3] = np.nan
    ref = eval_forward(model, x)
    opt = inference.optimize(model, serial_macs=0)
    plan = opt.plan(x)
    choices = [c for c in plan.choices.values() if len(c.cands) > 1]
    assert [c.cands[i][0] for c in choices for i in (0, 1)] == ["gemv", "gemv-threads"]
    for k in (0, 1):
        choices[0].index = k
        with np.errstate(invalid="ignore"):  # NaN met in a GEMM
            y = opt(x).data
        assert np.array_equal(np.isnan(y), np.isnan(ref)) and np.isnan(y).all()
        y = opt(np.nan_to_num(x)).data
        assert rel_err(y, eval_forward(model, np.nan_to_num(x))) < TOL
    assert "linear + relu [gemv" in opt.describe(x, kernels=True)[1]
