"""``tapegrad predict``: top-k classes of PNG/JPEG files the tests write themselves."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import cli, zoo
from tapegrad.predict import FASHION_MNIST, top_k

from ._deploy import eval_forward, perturb

Image = pytest.importorskip("PIL.Image")


def _checkpoint(tmp_path, in_channels=1, data="fashion-mnist", side=28, name="lenet5"):
    tg.manual_seed(7)
    model = perturb(zoo.get_model(name, in_channels=in_channels, input_size=side))
    state = {
        "model": dict(model.state_dict()),
        "config": {
            "model": name,
            "data": data,
            "extra": {"model_kwargs": {"in_channels": in_channels, "input_size": side}},
        },
    }
    path = tmp_path / f"{name}-{in_channels}.safetensors"
    tg.save(state, path)
    return model, path


def _expected(model, img, mean, std, side=28, channels=1, k=3):
    """Top-k computed here from the picture, independently of tapegrad.predict."""
    mode = "L" if channels == 1 else "RGB"
    im = img.convert(mode).resize((side, side), Image.BILINEAR)
    x = np.asarray(im, np.float32).reshape(side, side, channels).transpose(2, 0, 1) / 255.0
    x = (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[
        :, None, None
    ]
    logits = eval_forward(model, x[None].astype(np.float32))[0].astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = np.argsort(-p)[:k]
    return [(int(i), p[i]) for i in order]


def _parse(out):
    """{file name: [(class, percent), ...]} from predict's output."""
    result, current = {}, None
    for line in out.splitlines():
        if not line.startswith("  "):
            current = line.strip().rsplit("/", 1)[-1]
            result[current] = []
        else:
            parts = line.split()
            result[current].append((int(parts[1]), float(parts[-1].rstrip("%"))))
    return result


def _pictures(rng):
    gray = Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8), "L")
    rgb = Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), "RGB")
    return gray, rgb


def test_predict_folder_of_png_and_jpeg(tmp_path, capsys):
    model, ckpt = _checkpoint(tmp_path)
    rng = np.random.default_rng(0)
    gray, rgb = _pictures(rng)
    folder = tmp_path / "imgs"
    folder.mkdir()
    gray.save(folder / "a_gray.png")
    rgb.save(folder / "b_rgb.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    code = cli.main(["predict", str(ckpt), str(folder), "--top-k", "3"])
    out = capsys.readouterr().out
    assert code == 0
    got = _parse(out)
    assert sorted(got) == ["a_gray.png", "b_rgb.jpg"]
    mean, std = (0.2860,), (0.3530,)
    for name in got:
        with Image.open(folder / name) as im:
            want = _expected(model, im, mean, std)
        assert [c for c, _ in got[name]] == [c for c, _ in want]
        assert np.allclose([p for _, p in got[name]], [100 * p for _, p in want], atol=0.01)
    assert FASHION_MNIST[got["a_gray.png"][0][0]] in out


def test_grayscale_image_into_rgb_model(tmp_path, capsys):
    model, ckpt = _checkpoint(tmp_path, in_channels=3, data="cifar10", side=32)
    gray, _ = _pictures(np.random.default_rng(1))
    gray.save(tmp_path / "g.png")
    assert cli.main(["predict", str(ckpt), str(tmp_path / "g.png"), "--top-k", "2"]) == 0
    got = _parse(capsys.readouterr().out)["g.png"]
    cifar = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    with Image.open(tmp_path / "g.png") as im:
        want = _expected(model, im, *cifar, side=32, channels=3, k=2)
    assert [c for c, _ in got] == [c for c, _ in want]


def test_transparent_png_and_labels_file(tmp_path, capsys):
    _, ckpt = _checkpoint(tmp_path)
    rgba = Image.fromarray(np.random.default_rng(2).integers(0, 256, (28, 28, 4), np.uint8), "RGBA")
    rgba.save(tmp_path / "t.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"thing{i}" for i in range(10)) + "\n")
    code = cli.main(["predict", str(ckpt), str(tmp_path / "t.png"), "--labels", str(labels)])
    out = capsys.readouterr().out
    assert code == 0 and "thing" in out and len(_parse(out)["t.png"]) == 5


def test_unreadable_images_and_bad_arguments(tmp_path, capsys):
    _, ckpt = _checkpoint(tmp_path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _pictures(np.random.default_rng(3))[0].save(folder / "ok.png")
    assert cli.main(["predict", str(ckpt), str(folder)]) == 1
    captured = capsys.readouterr()
    assert "broken.png: cannot read the image" in captured.err
    assert "ok.png" in captured.out
    assert cli.main(["predict", str(ckpt), str(tmp_path / "missing.png")]) == 1
    assert "no image or folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["predict", str(ckpt), str(empty)]) == 1
    assert cli.main(["predict", str(ckpt), str(folder), "--top-k", "0"]) == 2
    _, auto = _checkpoint(tmp_path, name="conv_autoencoder")
    assert cli.main(["predict", str(auto), str(folder / "ok.png")]) == 1
    assert "reconstruction" in capsys.readouterr().err


def test_top_k_orders_and_clips():
    rows = top_k(np.array([[0.0, 2.0, 1.0]]), 5)
    assert [c for c, _ in rows[0]] == [1, 2, 0]
    assert np.isclose(sum(p for _, p in rows[0]), 1.0)


def test_module_entry_point(tmp_path):
    _, ckpt = _checkpoint(tmp_path)
    _pictures(np.random.default_rng(4))[1].save(tmp_path / "x.jpeg")
    proc = subprocess.run(
        [sys.executable, "-m", "tapegrad", "predict", str(ckpt), str(tmp_path / "x.jpeg")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(_parse(proc.stdout)["x.jpeg"]) == 5
