"""ONNX export, checked by onnx.checker and by ONNX Runtime against tapegrad's eval forward."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import nn, zoo
from tapegrad.nn import functional as F

from ._deploy import LAYER_CASES, Fn, eval_forward, perturb, rel_err, zoo_case

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
tg_onnx = pytest.importorskip("tapegrad.onnx")

TOL = 1e-5


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _check_agreement(model, sample_shape, path, batches=(1, 7), seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((2, *sample_shape)).astype(np.float32)
    proto = tg_onnx.export(model, x0, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    sess = _session(path)
    worst = 0.0
    for n in batches:
        x = rng.standard_normal((n, *sample_shape)).astype(np.float32)
        ref = eval_forward(model, x)
        (got,) = sess.run(None, {"input": x})
        assert got.shape == ref.shape
        worst = max(worst, rel_err(got, ref))
    return worst


@pytest.mark.parametrize("name", zoo.available())
def test_zoo_model_runs_in_onnxruntime_at_batch_1_and_7(name, tmp_path):
    model, sample = zoo_case(name)
    assert _check_agreement(model, sample, tmp_path / f"{name}.onnx") < TOL


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_each_exportable_layer_agrees_with_onnxruntime(case, tmp_path):
    _, build, sample = case
    tg.manual_seed(3)
    model = perturb(build())
    assert _check_agreement(model, sample, tmp_path / "m.onnx") < TOL


def test_names_opset_and_static_batch(tmp_path):
    model = perturb(zoo.get_model("lenet5"))
    x = np.zeros((3, 1, 28, 28), np.float32)
    proto = tg_onnx.export(
        model, x, tmp_path / "m.onnx", opset_version=18, input_names=["image"],
        output_names=["logits"], dynamic_batch=False,
    )  # fmt: skip
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.opset_import[0].version == 18
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 1, 28, 28]
    inits = {i.name for i in proto.graph.initializer}
    assert {"features.0.weight", "classifier.4.bias"} <= inits
    got = _session(tmp_path / "m.onnx").run(None, {"image": x + 1})[0]
    assert rel_err(got, eval_forward(model, x + 1)) < TOL
    with pytest.raises(Exception, match="Expected: 3"):  # a fixed batch of 3 refuses 2
        _session(tmp_path / "m.onnx").run(None, {"image": x[:2]})


def test_export_leaves_training_mode_and_weights_alone(tmp_path):
    model = perturb(zoo.get_model("vgg_small", width=4))
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    tg_onnx.export(model, np.ones((1, 1, 32, 32), np.float32), tmp_path / "m.onnx")
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_unexportable_op_is_named_with_its_module(tmp_path):
    class Crop(nn.Module):
        def forward(self, x):
            return x[:, :, 1:3]

    model = nn.Sequential(nn.Conv2d(1, 2, 3), Crop(), nn.ReLU())
    with pytest.raises(tg_onnx.ExportError, match=r"GetItem.*in 1 \(Crop\)"):
        tg_onnx.export(model, np.zeros((1, 1, 6, 6), np.float32), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()

    noisy = Fn(lambda m, x: F.dropout(x, 0.5, training=True))
    with pytest.raises(tg_onnx.ExportError, match="Dropout"):
        tg_onnx.export(noisy, np.zeros((1, 4), np.float32), None)


def test_uneven_adaptive_pool_and_batch_moving_reshape_are_refused():
    with pytest.raises(tg_onnx.ExportError, match="AdaptiveAvgPool2d.*multiple"):
        tg_onnx.export(nn.AdaptiveAvgPool2d(3), np.zeros((1, 2, 7, 7), np.float32), None)
    fold = Fn(lambda m, x: x.reshape(-1))
    with pytest.raises(tg_onnx.ExportError, match="batch axis"):
        tg_onnx.export(fold, np.zeros((2, 3), np.float32), None)
    proto = tg_onnx.export(fold, np.zeros((2, 3), np.float32), None, dynamic_batch=False)
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [6]


def test_bad_arguments():
    model = nn.Linear(3, 2)
    x = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match="opset_version"):
        tg_onnx.export(model, x, None, opset_version=11)
    with pytest.raises(TypeError, match="example_input"):
        tg_onnx.export(model, np.zeros((1, 3), np.int64), None)
    with pytest.raises(TypeError, match="example_input"):
        tg_onnx.export(model, [[0.0, 1.0, 2.0]], None)
    with pytest.raises(ValueError, match="input_names"):
        tg_onnx.export(model, x, None, input_names=["a", "b"])


def _write_checkpoint(tmp_path, name="lenet5"):
    model = perturb(zoo.get_model(name))
    state = {
        "model": dict(model.state_dict()),
        "config": {"model": name, "extra": {"model_kwargs": {"in_channels": 1, "input_size": 28}}},
    }
    run = tmp_path / "run"
    run.mkdir()
    tg.save(state, run / "last.safetensors")
    return model, run


def test_cli_export_from_run_dir_and_checkpoint(tmp_path):
    model, run = _write_checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    for src in (run, run / "last.safetensors"):
        proc = subprocess.run(
            [sys.executable, "-m", "tapegrad", "export", str(src), "--onnx", str(out)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "wrote" in proc.stdout and "lenet5" in proc.stdout
        x = np.random.default_rng(1).standard_normal((5, 1, 28, 28)).astype(np.float32)
        got = _session(out).run(None, {"input": x})[0]
        assert rel_err(got, eval_forward(model, x)) < TOL
        out.unlink()


def test_cli_export_errors_without_traceback(tmp_path):
    from tapegrad import cli

    code = cli.main(["export", str(tmp_path / "missing"), "--onnx", str(tmp_path / "m.onnx")])
    assert code == 1
    _, run = _write_checkpoint(tmp_path)
    code = cli.main(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--opset", "9"])
    assert code == 1 and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("name", zoo.available())
def test_folded_export_has_no_foldable_batch_norm_and_agrees(name, tmp_path):
    model, sample = zoo_case(name)
    rng = np.random.default_rng(4)
    plain = tg_onnx.export(model, np.zeros((1, *sample), np.float32), None)
    folded = tg_onnx.export(
        model, np.zeros((1, *sample), np.float32), tmp_path / "f.onnx", fold=True
    )
    n_bn = [sum(n.op_type == "BatchNormalization" for n in p.graph.node) for p in (plain, folded)]
    # the pre-activation ResNet's norms follow an addition or the input: those stay
    expected = {"resnet8": 4}.get(name, 0)
    assert n_bn[1] == expected and (n_bn[0] > 0) == (name not in ("lenet5", "conv_autoencoder"))
    sess = _session(tmp_path / "f.onnx")
    for n in (1, 7):
        x = rng.standard_normal((n, *sample)).astype(np.float32)
        assert rel_err(sess.run(None, {"input": x})[0], eval_forward(model, x)) < TOL


@pytest.mark.parametrize(
    "build,sample",
    [
        (lambda: nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4), nn.ReLU()), (3, 9)),
        (
            lambda: nn.Sequential(
                nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(6)
            ),
            (4, 5, 5),
        ),
    ],
    ids=["conv1d", "conv_transpose2d"],
)
def test_folded_export_after_conv1d_and_conv_transpose(build, sample, tmp_path):
    tg.manual_seed(2)
    model = perturb(build())
    proto = tg_onnx.export(
        model, np.zeros((1, *sample), np.float32), tmp_path / "f.onnx", fold=True
    )
    onnx.checker.check_model(proto, full_check=True)
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    x = np.random.default_rng(3).standard_normal((7, *sample)).astype(np.float32)
    got = _session(tmp_path / "f.onnx").run(None, {"input": x})[0]
    assert rel_err(got, eval_forward(model, x)) < TOL


def test_cli_export_folded(tmp_path):
    from tapegrad import cli

    model = perturb(zoo.get_model("vgg_small", width=4))
    state = {
        "model": dict(model.state_dict()),
        "config": {"model": "vgg_small", "extra": {"model_kwargs": {"width": 4}}},
    }
    tg.save(state, tmp_path / "c.safetensors")
    out = tmp_path / "f.onnx"
    assert cli.main(["export", str(tmp_path / "c.safetensors"), "--onnx", str(out), "--fold"]) == 0
    proto = onnx.load(str(out))
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    x = np.random.default_rng(2).standard_normal((3, 1, 32, 32)).astype(np.float32)
    assert rel_err(_session(out).run(None, {"input": x})[0], eval_forward(model, x)) < TOL
