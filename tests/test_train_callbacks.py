"""`--max-steps`, early stopping, the best checkpoint, metrics.csv, TensorBoard event files
and `eval`'s per-class accuracy and confusion matrix, on a tiny fake Fashion-MNIST."""

from __future__ import annotations

import csv
import json
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import callbacks, checkpoint, cli, train

from .test_data import make_learnable_fake_mnist


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """96 training and 32 test images; the label is a bright block's position."""
    d = tmp_path_factory.mktemp("fm")
    make_learnable_fake_mnist(d, 96, 32)
    return d


def _train(data_dir: Path, out: Path, *extra: str) -> list[str]:
    # 96 images in batches of 32: three optimiser steps per epoch
    return [
        "train", "lenet5", "--data-dir", str(data_dir), "--batch-size", "32", "--threads", "1",
        "--no-progress", "--no-plot", "--out", str(out), *extra,
    ]  # fmt: skip


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- --max-steps ---------------------------------------------------------------------------


def test_max_steps_stops_mid_epoch_and_a_resume_ends_like_an_uninterrupted_run(
    data_dir, tmp_path, capsys
):
    opts = ("--epochs", "2", "--augment", "--scheduler", "none")
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main(_train(data_dir, full, *opts)) == 0
    capsys.readouterr()
    assert cli.main(_train(data_dir, part, *opts, "--max-steps", "4")) == 0
    out = capsys.readouterr().out
    assert "stopped after 4 optimiser steps" in out
    assert "epoch 2 (step 4):" in out and "test accuracy: " in out  # the summary is printed
    state = tg.load(part / "last.safetensors")
    assert (state["epoch"], state["step"]) == (1, 4)  # one epoch and one batch of the next
    assert callbacks.saved_step(part / "last.safetensors") == 4
    assert (part / "epoch1.safetensors").is_file() and not (part / "epoch2.safetensors").exists()
    rows = _jsonl(part / "metrics.jsonl")
    assert [(r["epoch"], r["step"], r["partial"]) for r in rows] == [(1, 3, False), (2, 4, True)]
    # metrics.csv: the same rows
    table = _csv(part / "metrics.csv")
    assert [(int(r["epoch"]), int(r["step"]), r["partial"]) for r in table] == [
        (1, 3, "0"),
        (2, 4, "1"),
    ]
    assert [float(r["test_loss"]) for r in table] == [r["test_loss"] for r in rows]
    # the checkpoint taken mid-epoch evaluates
    assert cli.main(["eval", str(part), "--data-dir", str(data_dir), "--threads", "1"]) == 0
    acc = rows[-1]["test_accuracy"]
    assert f"accuracy {100 * acc:.2f}%" in capsys.readouterr().out
    # resumed without the limit: the epoch's last two batches, then the same weights
    assert cli.main([*_train(data_dir, part, *opts), "--resume", str(part)]) == 0
    assert "after epoch 1 and 1 steps of epoch 2" in capsys.readouterr().out
    a, b = tg.load(full / "last.safetensors"), tg.load(part / "last.safetensors")
    assert a["step"] == b["step"] == 6 and a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k], err_msg=k)
    steps = [(int(r["epoch"]), int(r["step"])) for r in _csv(part / "metrics.csv")]
    assert steps == [(1, 3), (2, 4), (2, 6)]


def test_max_steps_shortens_the_schedule_to_the_steps_taken():
    cfg = train.TrainConfig(epochs=3, max_steps=4, scheduler="onecycle")
    opt = tg.optim.SGD([tg.zeros(2, requires_grad=True)], lr=0.1)
    sched = train.build_scheduler(cfg, opt, steps_per_epoch=10)
    assert sched.total_steps == 4
    cfg.max_steps = 100  # more steps than the epochs hold: the epochs decide
    assert train.build_scheduler(cfg, opt, steps_per_epoch=10).total_steps == 30


# --- early stopping and the best checkpoint -------------------------------------------------


def test_early_stopping_and_best_checkpoint_from_the_command_line(data_dir, tmp_path, capsys):
    # a learning rate too small to move a float32 weight: the test loss never improves
    run = tmp_path / "run"
    opts = ("--epochs", "9", "--lr", "1e-30", "--early-stop", "2", "--monitor", "val_acc")
    assert cli.main(_train(data_dir, run, *opts)) == 0
    out = capsys.readouterr().out
    assert "early stopping: val_acc has not improved for 2 epochs" in out
    rows = _jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # best at 1, then two epochs of patience
    assert len({r["test_accuracy"] for r in rows}) == 1
    best = tg.load(run / "best.safetensors")
    assert best["epoch"] == 1 and callbacks.saved_step(run / "best.safetensors") == 3
    assert f"best val_acc: {rows[0]['test_accuracy']:.4f} (epoch 1, step 3)" in out
    state = tg.load(run / "last.safetensors")["callbacks"]["EarlyStopping.val_acc"]
    assert state["wait"] == 2 and state["best_epoch"] == 1
    # resumed after it stopped: stops again before training
    assert cli.main([*_train(data_dir, run, *opts), "--resume", str(run)]) == 0
    assert "early stopping" in capsys.readouterr().out
    assert len(_jsonl(run / "metrics.jsonl")) == 3
    # resumed from epoch 2 (one epoch waited): one more epoch, as the uninterrupted run
    resumed = [*_train(data_dir, run, *opts), "--resume", str(run / "epoch2.safetensors")]
    assert cli.main(resumed) == 0
    assert [r["epoch"] for r in _jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert [int(r["epoch"]) for r in _csv(run / "metrics.csv")] == [1, 2, 3]


def _row(epoch: int, loss: float, acc: float = 0.5, partial: bool = False) -> dict:
    return {
        "epoch": epoch,
        "step": 10 * epoch,
        "test_loss": loss,
        "test_accuracy": acc,
        "partial": partial,
    }


def _fake_trainer(out: Path | None = None, step: int = 0) -> types.SimpleNamespace:
    lines: list[str] = []
    return types.SimpleNamespace(
        out=out,
        step=step,
        is_main=True,
        should_stop=False,
        stop_reason="",
        log=lines.append,
        lines=lines,
    )


def test_early_stopping_counts_epochs_without_improvement():
    es = callbacks.EarlyStopping("val_loss", patience=2, min_delta=0.05)
    t = _fake_trainer()
    for epoch, loss in enumerate([1.0, 0.9, 0.88, 0.87], start=1):  # 0.88, 0.87: < min_delta
        es.on_epoch_end(t, _row(epoch, loss))
    assert t.should_stop and es.wait == 2 and es.tracker.best == 0.9
    assert "val_loss has not improved for 2 epochs (best 0.9000 at epoch 2)" in t.stop_reason
    # accuracy: higher is better; a NaN never improves; a partial epoch does not count
    es = callbacks.EarlyStopping("val_acc", patience=1)
    t = _fake_trainer()
    es.on_epoch_end(t, _row(1, 0.0, acc=0.5))
    es.on_epoch_end(t, _row(2, 0.0, acc=0.1, partial=True))
    assert not t.should_stop
    es.on_epoch_end(t, _row(2, 0.0, acc=0.6))
    es.on_epoch_end(t, _row(3, 0.0, acc=float("nan")))
    assert t.should_stop and es.tracker.best == 0.6
    # the state round-trips
    again = callbacks.EarlyStopping("val_acc", patience=1)
    again.load_state_dict(json.loads(json.dumps(es.state_dict())))
    t2 = _fake_trainer()
    again.on_fit_start(t2)
    assert t2.should_stop and again.state_dict() == es.state_dict()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: callbacks.EarlyStopping(patience=0), "patience must be an integer >= 1"),
        (lambda: callbacks.EarlyStopping("val_f1"), "unknown metric 'val_f1'"),
        (lambda: callbacks.BestCheckpoint("val_loss", mode="up"), "mode must be 'min' or 'max'"),
        (lambda: callbacks.BestCheckpoint(min_delta=-1.0), "min_delta must be"),
    ],
)
def test_bad_callback_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_monitor_without_the_metric_names_it():
    es = callbacks.EarlyStopping("val_acc", patience=1)
    with pytest.raises(ValueError, match="monitor 'val_acc'.*no test_accuracy"):
        es.on_epoch_end(_fake_trainer(), {"epoch": 1, "test_accuracy": None})
    es = callbacks.EarlyStopping("lr", mode="max", patience=1)
    with pytest.raises(KeyError, match="no 'lr'"):
        es.on_epoch_end(_fake_trainer(), {"epoch": 1})


def test_best_checkpoint_put_back_after_a_resume_to_an_earlier_step(tmp_path):
    # a run went on to a better epoch 3; resumed from epoch 1, whose best was epoch 1
    for epoch in (1, 3):
        state = {"epoch": epoch, "w": np.full(2, float(epoch))}
        meta = {callbacks.STEP_KEY: str(10 * epoch)}
        checkpoint.save(state, tmp_path / f"epoch{epoch}.safetensors", meta)
    best_path = tmp_path / "best.safetensors"
    (tmp_path / "best.safetensors").write_bytes((tmp_path / "epoch3.safetensors").read_bytes())
    bc = callbacks.BestCheckpoint("val_loss")
    bc.load_state_dict({"best": 0.5, "best_epoch": 1, "best_step": 10})
    bc.on_fit_start(_fake_trainer(tmp_path, step=10))
    assert tg.load(best_path)["epoch"] == 1 and callbacks.saved_step(best_path) == 10
    # when that epoch's checkpoint is gone too, the stale file goes rather than stay wrong
    best_path.write_bytes((tmp_path / "epoch3.safetensors").read_bytes())
    (tmp_path / "epoch1.safetensors").unlink()
    t = _fake_trainer(tmp_path, step=10)
    bc.on_fit_start(t)
    assert not best_path.exists() and "removed" in t.lines[0]


def test_trainer_callbacks_compose(data_dir, tmp_path):
    seen: list[tuple[str, int]] = []

    class Record(callbacks.Callback):
        def on_fit_start(self, trainer):
            seen.append(("start", trainer.step))

        def on_train_batch_end(self, trainer, loss):
            seen.append(("batch", trainer.step))

        def on_epoch_end(self, trainer, row):
            seen.append(("epoch", row["step"]))

        def on_fit_end(self, trainer):
            seen.append(("end", trainer.step))

    cfg = train.TrainConfig(
        data_dir=str(data_dir), limit_train=64, limit_test=32, batch_size=32, threads=1,
        epochs=2, progress=False, plot=False, out=str(tmp_path), max_steps=3,
    )  # fmt: skip
    trainer = train.Trainer(cfg, callbacks=[Record()], log=lambda s: None)
    trainer.fit()
    assert seen == [
        ("start", 0), ("batch", 1), ("batch", 2), ("epoch", 2), ("batch", 3), ("epoch", 3),
        ("end", 3),
    ]  # fmt: skip
    assert not (tmp_path / "metrics.csv").exists()  # only the callbacks given run
    with pytest.raises(ValueError, match="two callbacks share a name"):
        train.Trainer(cfg, callbacks=[callbacks.CSVLogger(), callbacks.CSVLogger()])
    names = [type(c).__name__ for c in train.default_callbacks(cfg)]
    assert names == ["CSVLogger", "BestCheckpoint"]


# --- TensorBoard ----------------------------------------------------------------------------


def _read_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of every event file in ``logdir`` (TFRecord framing, Event protos)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        raw, pos = path.read_bytes(), 0
        while pos < len(raw):
            (n,) = struct.unpack("<Q", raw[pos : pos + 8])
            event = event_pb2.Event.FromString(raw[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    return scalars


def test_tensorboard_event_files_hold_the_metrics(data_dir, tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    run = tmp_path / "run"
    assert (
        cli.main(_train(data_dir, run, "--epochs", "2", "--max-steps", "5", "--tensorboard")) == 0
    )
    rows = _jsonl(run / "metrics.jsonl")
    scalars = _read_scalars(run)
    assert [s for s, _ in scalars["loss/test"]] == [r["step"] for r in rows] == [3, 5]
    np.testing.assert_allclose(
        [v for _, v in scalars["loss/test"]], [r["test_loss"] for r in rows], rtol=1e-6
    )
    np.testing.assert_allclose(
        [v for _, v in scalars["accuracy/test"]], [r["test_accuracy"] for r in rows], rtol=1e-6
    )
    assert [v for _, v in scalars["epoch"]] == [1.0, 2.0]
    assert {"loss/train", "accuracy/train", "lr", "images_per_s"} <= set(scalars)


def test_tensorboard_batch_loss_every_n_steps(tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    logger = callbacks.TensorBoardLogger(tmp_path, log_every=2)
    t = _fake_trainer(tmp_path)
    logger.on_fit_start(t)
    for step, loss in enumerate([4.0, 3.0, 2.0, 1.0, 0.5], start=1):
        t.step = step
        logger.on_train_batch_end(t, loss)
    logger.on_fit_end(t)
    assert _read_scalars(tmp_path)["loss/train_batch"] == [(2, 3.0), (4, 1.0)]
    with pytest.raises(ValueError, match="log_every"):
        callbacks.TensorBoardLogger(tmp_path, log_every=0)


def test_tensorboard_after_a_resume_purges_the_steps_after_it(tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    from tensorboardX.proto import event_pb2

    logger = callbacks.TensorBoardLogger(tmp_path)
    logger.on_fit_start(_fake_trainer(tmp_path, step=3))  # resumed at step 3
    logger.on_fit_end(None)
    (path,) = tmp_path.glob("events.out.tfevents.*")
    raw, pos, starts = path.read_bytes(), 0, []
    while pos < len(raw):
        (n,) = struct.unpack("<Q", raw[pos : pos + 8])
        event = event_pb2.Event.FromString(raw[pos + 12 : pos + 12 + n])
        pos += 12 + n + 4
        if event.session_log.status == event_pb2.SessionLog.START:
            starts.append(event.step)
    assert starts == [4]  # the evaluation logged at step 3 stays


def test_missing_tensorboardx_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import raises ImportError
    code = cli.main(["train", "lenet5", "--tensorboard", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--tensorboard" in err and "tapegrad[tensorboard]" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ImportError, match=r"tapegrad\[tensorboard\]"):
        callbacks.TensorBoardLogger(tmp_path)


# --- eval: per-class accuracy and the confusion matrix ------------------------------------


def test_eval_prints_per_class_accuracy_and_writes_the_confusion_matrix(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(_train(data_dir, run, "--max-steps", "3")) == 0
    capsys.readouterr()
    picture = tmp_path / "plots" / "cm.png"
    argv = ["eval", str(run), "--data-dir", str(data_dir), "--threads", "1"]
    assert cli.main([*argv, "--confusion", str(picture)]) == 0
    out = capsys.readouterr().out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(picture.with_suffix(".csv"), newline="") as f:
        table = list(csv.reader(f))
    names = list(cli.class_names("fashion-mnist", 10))
    assert table[0] == ["true \\ predicted", *names] and names[0] == "T-shirt/top"
    cm = np.array([[int(v) for v in row[1:]] for row in table[1:]])
    assert [row[0] for row in table[1:]] == names
    # the matrix is the model's: recompute it from the checkpoint's predictions
    labels = tg.data.load_dataset("fashion-mnist", "test", str(data_dir))[1]
    assert cm.sum() == 32 and np.array_equal(cm.sum(axis=1), np.bincount(labels, minlength=10))
    acc = _jsonl(run / "metrics.jsonl")[-1]["test_accuracy"]
    assert np.trace(cm) == round(acc * 32)
    # a place that cannot be written: one line naming the option, exit 1
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert cli.main([*argv, "--confusion", str(afile / "cm.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--confusion" in err and "Traceback" not in err
    for i, name in enumerate(names):  # one line per class: images, correct, accuracy
        n, ok = cm[i].sum(), cm[i, i]
        cell = "-" if n == 0 else f"{100 * ok / n:.2f}%"
        assert any(
            line.split()[-3:] == [str(n), str(ok), cell] and name in line
            for line in out.splitlines()
        ), name


def test_confusion_matrix_counts_true_against_predicted():
    class Fixed(tg.nn.Module):
        def forward(self, x):  # predicts the class written in the first pixel
            c = x.data[:, 0, 0, 0].astype(int)
            return tg.tensor(np.eye(3, dtype=np.float32)[c] * 5.0)

    x = np.zeros((5, 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = [0, 1, 1, 2, 0]
    y = np.array([0, 1, 2, 2, 1])
    loader = tg.data.DataLoader(tg.data.TensorDataset(x, y), 2)
    _, cm = train.confusion_matrix(Fixed(), loader)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    np.testing.assert_allclose(train.per_class_accuracy(cm), [1.0, 0.5, 0.5])
    assert np.isnan(train.per_class_accuracy(np.zeros((2, 2), np.int64))).all()
    bad = tg.data.DataLoader(tg.data.TensorDataset(x, y + 3), 2)
    with pytest.raises(ValueError, match=r"confusion_matrix: labels must lie in \[0, 2\]"):
        train.confusion_matrix(Fixed(), bad)


def test_confusion_without_matplotlib_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    tg.save({"model": {}, "epoch": 0}, tmp_path / "last.safetensors")
    code = cli.main(["eval", str(tmp_path), "--confusion", str(tmp_path / "cm.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--confusion" in err and "matplotlib" in err and "tapegrad[plot]" in err
