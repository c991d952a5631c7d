"""The command line as a user meets it: runs go to a default folder, run folders can be
evaluated and resumed, every zoo model (batch norm included) comes back from its
checkpoint, and every bad argument is one line on stderr naming it (exit 2 for usage,
1 for runtime errors), with a traceback only on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import cli, zoo

from .test_data import make_learnable_fake_mnist


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A small learnable fake Fashion-MNIST: the label is a bright block's position."""
    d = tmp_path_factory.mktemp("fm")
    make_learnable_fake_mnist(d, 128, 64)
    return d


SMALL = ("--limit-train", "64", "--limit-test", "32", "--batch-size", "32", "--threads", "1")
QUIET = ("--no-progress", "--no-plot")


def _train(data_dir: Path, model: str, *extra: str) -> list[str]:
    return ["train", model, "--data-dir", str(data_dir), *SMALL, *QUIET, *extra]


def _one_error_line(capsys, code: int, got: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- default run folder, run folders as arguments ------------------------------------------


def test_train_without_out_writes_to_a_printed_default_folder(
    data_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert cli.main(_train(data_dir, "lenet5")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "run directory: runs/lenet5"
    assert "runs/lenet5/last.safetensors" in out[-1]
    for name in ("last.safetensors", "epoch1.safetensors", "metrics.jsonl", "config.json"):
        assert (tmp_path / "runs" / "lenet5" / name).is_file(), name
    # a second run never mixes into the first one's folder
    assert cli.main(_train(data_dir, "lenet5")) == 0
    assert capsys.readouterr().out.splitlines()[0] == "run directory: runs/lenet5-2"
    assert len((tmp_path / "runs" / "lenet5" / "metrics.jsonl").read_text().splitlines()) == 1
    # eval takes a run folder's last.safetensors
    assert cli.main(["eval", "runs/lenet5/", "--data-dir", str(data_dir), "--threads", "1"]) == 0
    assert "lenet5 on fashion-mnist test (64 images)" in capsys.readouterr().out


def test_eval_of_a_folder_without_checkpoint_says_so_in_one_line(tmp_path, capsys):
    code = cli.main(["eval", str(tmp_path)])
    _one_error_line(capsys, 2, code, "checkpoint", str(tmp_path), "last.safetensors")


def _weights(path: Path) -> dict:
    return tg.load(path)["model"]


@pytest.mark.parametrize("model", zoo.available())
def test_every_zoo_model_evaluates_and_resumes_from_its_checkpoint(
    data_dir, tmp_path, model, capsys
):
    # two batches of 16 per epoch; the run stops after 3 steps, one batch into epoch 2
    part = tmp_path / "part"
    quick = ("--limit-train", "32", "--batch-size", "16", "--limit-test", "16")
    args = _train(data_dir, model, *quick, "--epochs", "2", "--max-steps", "3", "--out", str(part))
    assert cli.main(args) == 0
    ev = ["eval", str(part / "epoch1.safetensors"), "--data-dir", str(data_dir), "--limit-test"]
    assert cli.main([*ev, "16"]) == 0
    assert f"{model} on fashion-mnist test (16 images)" in capsys.readouterr().out
    # resume from epoch 1 into the same folder: ends where the uninterrupted run ended
    full = _weights(part / "last.safetensors")
    assert cli.main([*args, "--resume", str(part / "epoch1.safetensors")]) == 0
    assert "resumed from" in capsys.readouterr().out
    again = _weights(part / "last.safetensors")
    assert full.keys() == again.keys()
    for k in full:
        assert full[k].shape == again[k].shape and full[k].dtype == again[k].dtype, k
        np.testing.assert_array_equal(full[k], again[k], err_msg=k)
    rows = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 2), (2, 3)]


def test_resume_of_a_run_folder_continues_in_that_folder(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_batch = ("--limit-train", "32")  # one step per epoch: the folders are what is tested
    assert cli.main(_train(data_dir, "vgg_small", *one_batch)) == 0
    capsys.readouterr()
    args = _train(data_dir, "vgg_small", *one_batch, "--epochs", "2", "--resume", "runs/vgg_small")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "run directory: runs/vgg_small\n" in out and "after epoch 1" in out
    assert not (tmp_path / "runs" / "vgg_small-2").exists()
    assert (tmp_path / "runs" / "vgg_small" / "epoch2.safetensors").is_file()


# --- bad arguments: one line, exit 2 -------------------------------------------------------

USAGE = {
    "epochs_negative": (["train", "lenet5", "--epochs", "-1"], "--epochs"),
    "epochs_zero": (["train", "lenet5", "--epochs", "0"], "--epochs"),
    "limit_train_zero": (["train", "lenet5", "--limit-train", "0"], "--limit-train"),
    "limit_test_zero": (["train", "lenet5", "--limit-test", "0"], "--limit-test"),
    "threads_zero": (["train", "lenet5", "--threads", "0"], "--threads"),
    "threads_negative": (["train", "lenet5", "--threads", "-3"], "--threads"),
    "threads_text": (["train", "lenet5", "--threads", "two"], "--threads"),
    "batch_size_zero": (["train", "lenet5", "--batch-size", "0"], "--batch-size"),
    "lr_nan": (["train", "lenet5", "--lr", "nan"], "--lr"),
    "lr_inf": (["train", "lenet5", "--lr", "inf"], "--lr"),
    "lr_negative": (["train", "lenet5", "--lr", "-0.1"], "--lr"),
    "momentum_nan": (["train", "lenet5", "--momentum", "nan"], "--momentum"),
    "weight_decay_negative": (["train", "lenet5", "--weight-decay", "-1"], "--weight-decay"),
    "warmup_negative": (["train", "lenet5", "--warmup", "-5"], "--warmup"),
    "seed_negative": (["train", "lenet5", "--seed", "-1"], "--seed"),
    "unknown_model": (["train", "lenet6"], "lenet6"),
    "max_steps_zero": (["train", "lenet5", "--max-steps", "0"], "--max-steps"),
    "max_steps_negative": (["train", "lenet5", "--max-steps", "-5"], "--max-steps"),
    "max_steps_text": (["train", "lenet5", "--max-steps", "ten"], "--max-steps"),
    "early_stop_zero": (["train", "lenet5", "--early-stop", "0"], "--early-stop"),
    "early_stop_negative": (["train", "lenet5", "--early-stop", "-2"], "--early-stop"),
    "unknown_monitor": (["train", "lenet5", "--monitor", "val_f1"], "--monitor"),
    "monitor_accuracy_of_autoencoder": (
        ["train", "conv_autoencoder", "--monitor", "val_acc"],
        "--monitor val_acc",
    ),
    "confusion_not_a_picture": (["eval", "x.safetensors", "--confusion", "cm.csv"], "--confusion"),
    "unknown_optimizer": (["train", "lenet5", "--optimizer", "lbfgs"], "--optimizer"),
    "unknown_data": (["train", "lenet5", "--data", "imagenet"], "--data"),
    "unknown_option": (["train", "lenet5", "--epoch-count", "2"], "--epoch-count"),
    "resume_missing": (["train", "lenet5", "--resume", "/nonexistent/x.safetensors"], "--resume"),
    "eval_missing": (["eval", "/nonexistent/x.safetensors"], "checkpoint"),
    "eval_batch_zero": (["eval", "x.safetensors", "--batch-size", "0"], "--batch-size"),
    "eval_unknown_model": (["eval", "x.safetensors", "--model", "lenet6"], "--model"),
    "info_input_size_zero": (["info", "vgg_small", "--input-size", "0"], "--input-size"),
    "info_input_size_unfit": (["info", "vgg_small", "--input-size", "6"], "--input-size 6"),
    "info_unknown_model": (["info", "lenet6"], "lenet6"),
    "no_command": ([], "COMMAND"),
    "unknown_command": (["fit"], "COMMAND"),
}


@pytest.mark.parametrize("case", sorted(USAGE))
def test_usage_errors_are_one_line_naming_the_argument(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing lands in the checkout if a case were accepted
    argv, needle = USAGE[case]
    _one_error_line(capsys, 2, cli.main(argv), needle)


def test_out_naming_a_file_or_an_unwritable_place(tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    code = cli.main(["train", "lenet5", "--out", str(afile)])
    _one_error_line(capsys, 2, code, "--out", "is a file")
    code = cli.main(["train", "lenet5", "--out", str(afile / "run")])
    _one_error_line(capsys, 1, code, "--out", "cannot create")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code = cli.main(["train", "lenet5", "--out", str(locked / "run")])
        _one_error_line(capsys, 1, code, "--out", "cannot create")


# --- errors while running: one line, exit 1 -----------------------------------------------


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(_train(data_dir, "lenet5", "--out", str(out))) == 0
    return out


def test_corrupt_and_foreign_checkpoints(data_dir, run_dir, tmp_path, capsys):
    capsys.readouterr()
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes((run_dir / "last.safetensors").read_bytes()[:300])
    code = cli.main(["eval", str(corrupt), "--data-dir", str(data_dir)])
    _one_error_line(capsys, 1, code, "checkpoint", str(corrupt))
    code = cli.main(
        [*_train(data_dir, "lenet5", "--out", str(tmp_path / "r")), "--resume", str(corrupt)]
    )
    _one_error_line(capsys, 1, code, "--resume", str(corrupt))
    # another model's checkpoint
    code = cli.main(["eval", str(run_dir), "--model", "vgg_small", "--data-dir", str(data_dir)])
    _one_error_line(capsys, 1, code, "does not fit vgg_small")
    args = _train(data_dir, "vgg_small", "--out", str(tmp_path / "v"))
    code = cli.main([*args, "--resume", str(run_dir / "last.safetensors")])
    _one_error_line(capsys, 1, code, "--resume", "VGGSmall.load_state_dict")
    # a plain safetensors file that is not a training checkpoint
    tg.save({"w": np.ones(2)}, tmp_path / "plain.safetensors")
    code = cli.main([*args, "--resume", str(tmp_path / "plain.safetensors")])
    _one_error_line(capsys, 1, code, "--resume", "not a training checkpoint")


def test_missing_data_dir_is_one_line_and_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["train", "lenet5", "--data-dir", str(tmp_path / "none")])
    _one_error_line(capsys, 1, code, "tapegrad train:", str(tmp_path / "none"))
    assert not (tmp_path / "runs" / "lenet5").exists()


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    full.pop("TAPEGRAD_DEBUG", None) if "TAPEGRAD_DEBUG" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "tapegrad", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
    )


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TAPEGRAD_NUM_THREADS": "abc"}, "TAPEGRAD_NUM_THREADS"),
        ({"TAPEGRAD_NUM_THREADS": "0"}, "TAPEGRAD_NUM_THREADS"),
        ({"TAPEGRAD_KERNELS": "conv2d=bogus"}, "TAPEGRAD_KERNELS"),
        ({"TAPEGRAD_KERNELS": "conv2d"}, "TAPEGRAD_KERNELS"),
        ({"TAPEGRAD_KERNELS": "nosuchop=reference"}, "TAPEGRAD_KERNELS"),
    ],
)
def test_bad_environment_is_one_line_naming_the_variable(env, needle):
    proc = _cli(["info", "lenet5"], **env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_traceback_only_with_debug(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00[1,2]")
    plain = _cli(["eval", str(bad)])
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    for proc in (_cli(["eval", str(bad), "--debug"]), _cli(["eval", str(bad)], TAPEGRAD_DEBUG="1")):
        assert proc.returncode == 1 and "Traceback" in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_module_entry_point_runs_only_as_the_main_module(monkeypatch, capsys):
    # a spawned worker imports the parent's main module again as __mp_main__
    import runpy

    monkeypatch.setattr(sys, "argv", ["tapegrad"])
    runpy.run_module("tapegrad.__main__", run_name="__mp_main__")
    assert capsys.readouterr().out == ""
