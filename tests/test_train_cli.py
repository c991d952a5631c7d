"""The training loop and the command line, on small slices (fake IDX files or the real set)."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import cli, nn, train
from tapegrad.data import DataLoader, TensorDataset

from .test_data import make_learnable_fake_mnist

FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    """A learnable fake Fashion-MNIST: the label is drawn as a bright block's position."""
    d = tmp_path_factory.mktemp("fm")
    make_learnable_fake_mnist(d, 320, 160)
    return d


def _train_args(fake_dir, out, *extra):
    return [
        "train", "lenet5", "--data", "fashion-mnist", "--data-dir", str(fake_dir),
        "--batch-size", "32", "--threads", "1", "--out", str(out), *extra,
    ]  # fmt: skip


def test_cli_module_trains_writes_run_dir(fake_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "tapegrad", *_train_args(fake_dir, out, "--epochs", "2")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "img/s" in proc.stderr and "loss=" in proc.stderr and "acc=" in proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    acc = rows[-1]["test_accuracy"]
    assert f"test accuracy: {100 * acc:.2f}%" in proc.stdout
    assert acc > 0.5  # the blocks are easy: a broken loop stays near 0.1
    for name in ("last.safetensors", "epoch1.safetensors", "epoch2.safetensors", "config.json"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="dataset-fashion-mnist not installed")
def test_cli_on_a_slice_of_real_fashion_mnist(tmp_path, capsys):
    args = ["train", "lenet5", "--epochs", "1", "--limit-train", "1920", "--limit-test", "300"]
    assert cli.main([*args, "--threads", "1", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("test accuracy: ")[1].split("%")[0])
    assert acc > 35.0  # 30 batches of real data already beat chance (10%) by far


def test_resume_gives_the_same_final_weights(fake_dir, tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    opts = ("--epochs", "3", "--augment", "--no-progress", "--no-plot", "--limit-train", "128")
    assert cli.main(_train_args(fake_dir, full, *opts)) == 0
    assert cli.main(_train_args(fake_dir, part, *opts)) == 0
    # pretend the second run died after epoch 1: resume from that checkpoint
    ck = part / "epoch1.safetensors"
    assert cli.main([*_train_args(fake_dir, part, *opts), "--resume", str(ck)]) == 0
    assert "resumed from" in capsys.readouterr().out
    a, b = tg.load(full / "last.safetensors"), tg.load(part / "last.safetensors")
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k], err_msg=k)
    rows = (part / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


class _DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(),
            nn.Linear(4 * 13 * 13, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


def _loaders(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((96, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 96)
    return {
        "train_loader": DataLoader(TensorDataset(x, y), 16, shuffle=True, seed=1),
        "test_loader": DataLoader(TensorDataset(x[:32], y[:32]), 32),
    }


def test_trainer_resume_restores_dropout_stream_and_hooks(tmp_path):
    cfg = train.TrainConfig(epochs=3, progress=False, plot=False, out=str(tmp_path / "a"))
    calls = []
    tg.manual_seed(0)
    ref = train.Trainer(cfg, model=_DropNet(), **_loaders(), grad_hook=calls.append, log=str)
    ref.fit()
    assert len(calls) == 3 * 6 and calls[0] is ref.params  # once per batch, after backward

    cfg_b = train.TrainConfig(epochs=3, progress=False, plot=False, out=str(tmp_path / "b"))
    tg.manual_seed(0)
    first = train.Trainer(cfg_b, model=_DropNet(), **_loaders(), log=str)
    first.fit(stop_after=1)  # the session ends after epoch 1
    tg.manual_seed(123)  # a fresh process: different generator state until resume
    again = train.Trainer(cfg_b, model=_DropNet(), **_loaders(), log=str)
    again.resume(tmp_path / "b" / "epoch1.safetensors")
    again.fit()
    for (k, a), b in zip(ref.model.state_dict().items(), again.model.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_non_main_rank_writes_nothing(tmp_path):
    cfg = train.TrainConfig(epochs=1, progress=False, out=str(tmp_path / "r1"), threads=1)
    lines = []
    t = train.Trainer(cfg, model=_DropNet(), **_loaders(), is_main=False, log=lines.append)
    t.fit()
    assert not (tmp_path / "r1").exists() and lines == []


def test_eval_and_info_commands(fake_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_train_args(fake_dir, out, "--epochs", "1", "--no-progress", "--no-plot")) == 0
    acc = json.loads((out / "metrics.jsonl").read_text())["test_accuracy"]
    capsys.readouterr()
    argv = ["eval", str(out / "last.safetensors"), "--data-dir", str(fake_dir), "--threads", "1"]
    assert cli.main(argv) == 0
    assert f"accuracy {100 * acc:.2f}%" in capsys.readouterr().out
    assert cli.main(["info", "lenet5"]) == 0
    text = capsys.readouterr().out
    assert "total parameters: 61,706" in text and "FLOPs per image" in text
    assert cli.main(["info", "--list"]) == 0
    assert "vgg_small" in capsys.readouterr().out.split()


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    argv = ["train", "lenet5", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "none") in err and "sudo apt-get install dataset-fashion-mnist" in err
    assert cli.main(["train", "alexnet"]) == 2
    assert "unknown model 'alexnet'" in capsys.readouterr().err


def test_broken_delegate_cannot_break_train(monkeypatch, fake_dir, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tapegrad.bench.cli", None)  # import raises ImportError
    assert cli.main(["bench", "--quick"]) == 2
    assert "tapegrad.bench.cli is not available" in capsys.readouterr().err
    argv = _train_args(fake_dir, tmp_path / "r", "--epochs", "1", "--no-progress", "--no-plot")
    assert cli.main(argv) == 0


def test_delegate_receives_its_arguments(monkeypatch, capsys):
    import types

    seen = {}
    fake = types.ModuleType("tapegrad.experiments.cli")
    fake.add_arguments = lambda p: p.add_argument("name")
    fake.main = lambda args: seen.setdefault("name", args.name) and 0
    monkeypatch.setitem(sys.modules, "tapegrad.experiments.cli", fake)
    assert cli.main(["experiment", "dropout-regression"]) == 0
    assert seen == {"name": "dropout-regression"}


def test_curves_without_matplotlib_print_one_notice(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    monkeypatch.setattr(train, "_notice_shown", False)
    rows = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0, "test_accuracy": 0.5}]
    lines = []
    assert train.plot_curves(rows, tmp_path / "c.png", lines.append) is False
    assert train.plot_curves(rows, tmp_path / "c.png", lines.append) is False
    assert len(lines) == 1 and "matplotlib is not installed" in lines[0]
    assert not (tmp_path / "c.png").exists()


def test_console_script_is_declared_and_runs():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "tapegrad"]
    assert ep.value == "tapegrad.cli:main" and ep.load() is cli.main
    import shutil

    exe = shutil.which("tapegrad")
    assert exe is not None, "the tapegrad script is not on PATH: reinstall the package"
    proc = subprocess.run([exe, "info", "lenet5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "total parameters: 61,706" in proc.stdout


def test_reconstruction_task_is_seen_through_a_wrapper():
    from tapegrad import zoo

    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert train.is_reconstruction(zoo.conv_autoencoder(width=2))
    assert train.is_reconstruction(Wrapper(zoo.conv_autoencoder(width=2)))
    assert not train.is_reconstruction(Wrapper(zoo.lenet5()))


def test_cifar10_trains_models_built_for_three_channels(tmp_path, capsys):
    from tapegrad.data import write_cifar_batch

    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 64), ("test_batch", 32)):
        imgs = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        write_cifar_batch(tmp_path / name, imgs, rng.integers(0, 10, n))
    out = tmp_path / "run"
    argv = [
        "train", "lenet5", "--data", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1",
        "--batch-size", "16", "--threads", "1", "--no-progress", "--augment", "--no-plot",
        "--out", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    state = tg.load(out / "last.safetensors")
    assert state["model"]["features.0.weight"].shape == (6, 3, 5, 5)
    assert state["model"]["classifier.0.weight"].shape == (120, 16 * 6 * 6)  # built for 32x32
    capsys.readouterr()
    argv = ["eval", str(out / "last.safetensors"), "--data", "cifar10", "--data-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    assert "lenet5 on cifar10 test (32 images)" in capsys.readouterr().out


def test_resume_into_a_longer_run_follows_the_new_schedule(fake_dir, tmp_path, capsys):
    out = tmp_path / "run"
    opts = ("--no-progress", "--no-plot")
    assert cli.main(_train_args(fake_dir, out, "--epochs", "1", *opts)) == 0
    # the 1-epoch one-cycle schedule has ended; a 3-epoch run continues on its own schedule
    ck = out / "epoch1.safetensors"
    assert cli.main([*_train_args(fake_dir, out, "--epochs", "3", *opts), "--resume", str(ck)]) == 0
    assert "following this run's onecycle schedule from epoch 1" in capsys.readouterr().out
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[1]["lr"] > rows[0]["lr"]  # mid-cycle of the 3-epoch schedule, not its end


def test_wrap_model_receives_the_model_built_for_the_data(tmp_path):
    # the distributed run wraps the model this way: it must be built from the data (3 channels)
    from tapegrad.data import write_cifar_batch

    rng = np.random.default_rng(1)
    for name, n in (("data_batch_1", 32), ("test_batch", 16)):
        imgs = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        write_cifar_batch(tmp_path / name, imgs, rng.integers(0, 10, n))
    cfg = train.TrainConfig(model="lenet5", data="cifar10", data_dir=str(tmp_path), threads=1)
    seen = []
    trainer = train.Trainer(cfg, wrap_model=lambda m: seen.append(m) or m)
    assert trainer.model is seen[0]
    assert seen[0].features[0].weight.shape == (6, 3, 5, 5)


def test_trainer_is_composed_of_its_pieces(fake_dir):
    def config(**kw):
        return train.TrainConfig(
            data_dir=str(fake_dir), limit_train=64, limit_test=32, threads=1, **kw
        )

    trainer = train.Trainer(config(augment=True))
    # the same steps run by hand, in the Trainer's order, build the same run
    cfg = config(augment=True)
    train.apply_threads(cfg)
    train.seed_run(cfg)
    tr, te = train.build_loaders(cfg)
    cfg.extra["model_kwargs"] = train.model_kwargs(tr.dataset.arrays[0])
    model = train.build_model(cfg)
    assert cfg.extra == trainer.cfg.extra == {"model_kwargs": {"in_channels": 1, "input_size": 28}}
    for (k, a), b in zip(trainer.model.state_dict().items(), model.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    for mine, theirs in ((tr, trainer.train_loader), (te, trainer.test_loader)):
        (xa, ya), (xb, yb) = next(iter(mine)), next(iter(theirs))  # augmented alike
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert len(tr) == 1 and len(te) == 1  # 64 images in one batch of 64; 32 test images
    assert isinstance(tr.dataset.transform, tg.data.Compose) and te.dataset.transform is None
    assert train.build_augmentation(config(), 28) is None
    flips = train.build_augmentation(config(augment=True, data="cifar10"), 28).transforms
    assert [type(t).__name__ for t in flips] == ["RandomCrop", "RandomHorizontalFlip"]
    # a loader given to the Trainer is used as given, even an empty one
    empty = DataLoader(TensorDataset(np.zeros((0, 1, 28, 28), np.float32), np.zeros(0)), 8)
    assert train.Trainer(config(), train_loader=empty).train_loader is empty


def test_dropout_stream_position_is_set_through_its_public_function():
    from tapegrad.ops import dropout

    dropout.set_rng_state(7, 41)
    assert dropout.rng_state() == (7, 41)
    assert dropout.next_key() == (7, 41) and dropout.rng_state() == (7, 42)
    with pytest.raises(ValueError, match="set_rng_state: step must be >= 0"):
        dropout.set_rng_state(7, -1)
    tg.manual_seed(0)
    assert dropout.rng_state() == (0, 0)
