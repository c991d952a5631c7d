"""ImageFolder and the per-item image transforms (torchvision's semantics), on images the
tests write; PyTorch's interpolate/grid_sample, the standard library's colorsys and (when
installed) torchvision are the oracles."""

from __future__ import annotations

import colorsys
import math
import sys

import numpy as np
import pytest

from tapegrad.data import functional as F
from tapegrad.data.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    Grayscale,
    Normalize,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    Resize,
    ToTensor,
)
from tapegrad.utils.data import DataLoader

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """root/cat: 3 PNGs (one in a sub-folder) and a text file; root/dog: 2 JPEGs, 1 PNG."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    arrays = {}
    for cls, names in (("cat", ["b.png", "a.png", "sub/c.png", "notes.txt"]),
                       ("dog", ["x.jpg", "y.jpeg", "z.png"])):  # fmt: skip
        for name in names:
            path = root / cls / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".txt"):
                path.write_text("not an image")
                continue
            a = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(a).save(path)
            arrays[str(path)] = a
    (root / "empty_file_at_top.png").write_bytes(b"")  # not inside a class folder
    return root, arrays


def test_image_folder_lists_classes_and_reads_items(folder):
    from tapegrad.data import ImageFolder

    root, arrays = folder
    ds = ImageFolder(root, transform=ToTensor())
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    names = [p.split(str(root))[1] for p, _ in ds.samples]
    assert names == ["/cat/a.png", "/cat/b.png", "/cat/sub/c.png", "/dog/x.jpg", "/dog/y.jpeg",
                     "/dog/z.png"]  # fmt: skip
    assert ds.targets == [0, 0, 0, 1, 1, 1] and len(ds) == 6
    x, y = ds[1]
    assert x.shape == (3, 12, 10) and x.dtype == np.float32 and y == 0
    np.testing.assert_allclose(x, arrays[ds.samples[1][0]].transpose(2, 0, 1) / 255.0, atol=1e-7)
    jpeg, _ = ds[3]  # lossy: close to what was written, not equal
    assert np.abs(jpeg - arrays[ds.samples[3][0]].transpose(2, 0, 1) / 255.0).mean() < 0.25
    ds = ImageFolder(root, transform=Compose([Resize(6), ToTensor()]), target_transform=str)
    x, y = ds[0]
    assert x.shape == (3, 7, 6) and y == "0"  # int size: the shorter edge, aspect kept


def test_image_folder_errors(folder, tmp_path, monkeypatch):
    from tapegrad.data import ImageFolder

    with pytest.raises(FileNotFoundError, match="no class folder found in"):
        ImageFolder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no image file in the class folder\(s\) \['a'\]"):
        ImageFolder(tmp_path)
    assert len(ImageFolder(tmp_path, allow_empty=True)) == 0
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install tapegrad\[image\]"):
        ImageFolder(folder[0])


def test_augmented_image_folder_loads_the_same_with_workers(folder):
    from tapegrad.data import ImageFolder

    t = Compose([RandomResizedCrop(8, scale=(0.5, 1.0)), RandomRotation(20), ToTensor(),
                 ColorJitter(0.4, 0.4, 0.4, 0.1), RandomErasing(p=0.5),
                 Normalize([0.5] * 3, [0.25] * 3)])  # fmt: skip
    ds = ImageFolder(folder[0], transform=t)

    def run(workers):
        dl = DataLoader(ds, batch_size=4, shuffle=True, seed=3, num_workers=workers)
        return [(x.numpy(), y.numpy()) for x, y in dl]

    a, b = run(0), run(2)
    assert [x.shape for x, _ in a] == [(4, 3, 8, 8), (2, 3, 8, 8)]
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def _random_image(c=3, h=13, w=11, seed=0):
    return np.random.default_rng(seed).random((c, h, w)).astype(np.float32)


@pytest.mark.torch
@pytest.mark.parametrize("size", [(5, 7), (20, 15), (13, 4), (9, 30)])
def test_resize_matches_torch_interpolate(size):
    torch = pytest.importorskip("torch")
    x = _random_image()
    for antialias in (True, False):
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(x)[None], size=size, mode="bilinear", align_corners=False,
            antialias=antialias)[0].numpy()  # fmt: skip
        np.testing.assert_allclose(F.resize(x, size, antialias=antialias), ref, atol=2e-6)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=size, mode="nearest")
    np.testing.assert_array_equal(F.resize(x, size, "nearest"), ref[0].numpy())


@pytest.mark.torch
@pytest.mark.parametrize("n", [7, 8])
def test_rotate_matches_torch_grid_sample(n):
    torch = pytest.importorskip("torch")
    x = _random_image(2, n, n, seed=n)
    for angle in (30.0, -75.0, 200.0):
        a = math.radians(angle)
        theta = torch.tensor([[[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0]]])
        grid = torch.nn.functional.affine_grid(theta, (1, 2, n, n), align_corners=False)
        ref = torch.nn.functional.grid_sample(
            torch.from_numpy(x)[None], grid, mode="bilinear", align_corners=False)  # fmt: skip
        np.testing.assert_allclose(F.rotate(x, angle, "bilinear"), ref[0].numpy(), atol=2e-6)
    # counter-clockwise: a quarter turn is numpy's rot90, with nearest pixels exactly
    np.testing.assert_array_equal(F.rotate(x, 90.0), np.rot90(x, 1, axes=(1, 2)))
    out = F.rotate(x, 45.0, fill=0.5)
    assert out[0, 0, 0] == 0.5 and out.shape == x.shape  # corners come from outside
    assert F.rotate(x, 45.0, expand=True).shape[1:] == (math.ceil(n * 2**0.5),) * 2


def test_colour_adjustments_follow_their_formulas():
    x = _random_image(3, 5, 4)
    np.testing.assert_allclose(F.adjust_brightness(x, 1.7), np.clip(1.7 * x, 0, 1), rtol=1e-6)
    gray = 0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    contrast = np.clip(0.3 * x + 0.7 * gray.mean(), 0, 1)
    np.testing.assert_allclose(F.adjust_contrast(x, 0.3), contrast, atol=1e-6)
    np.testing.assert_allclose(
        F.adjust_saturation(x, 1.8), np.clip(1.8 * x - 0.8 * gray, 0, 1), atol=1e-6)  # fmt: skip
    for f in (0.25, -0.4):
        ref = np.empty_like(x)
        for i in range(5):
            for j in range(4):
                h, s, v = colorsys.rgb_to_hsv(*x[:, i, j])
                ref[:, i, j] = colorsys.hsv_to_rgb((h + f) % 1.0, s, v)
        np.testing.assert_allclose(F.adjust_hue(x, f), ref, atol=1e-5)
    one = x[:1]
    assert F.adjust_hue(one, 0.3) is one and F.adjust_saturation(one, 0.0) is one
    np.testing.assert_allclose(Grayscale()(x)[0], gray, atol=1e-6)


def test_center_crop_and_resize_sizes():
    x = _random_image(1, 10, 7)
    np.testing.assert_array_equal(CenterCrop(4)(x), x[:, 3:7, 2:6])  # round(1.5) == 2
    np.testing.assert_array_equal(CenterCrop((5, 3))(x), x[:, 2:7, 2:5])
    big = CenterCrop(12)(x)
    assert big.shape == (1, 12, 12) and big[0, 0, 0] == 0
    np.testing.assert_array_equal(big[:, 1:11, 2:9], x)
    np.testing.assert_array_equal(CenterCrop((11, 14))(x)[:, :10, 3:10], x)  # pads 3 left, 4 right
    np.testing.assert_array_equal(CenterCrop((12, 5))(x)[:, 1:11], x[:, :, 1:6])
    assert Resize(5)(x).shape == (1, 7, 5)  # int(5 * 10 / 7)
    assert Resize(5, max_size=6)(x).shape == (1, 6, 4)
    assert Resize((3, 4))(np.zeros((2, 1, 10, 7))).shape == (2, 1, 3, 4)
    pil = Image.fromarray((x[0] * 255).astype(np.uint8))
    out = Resize((4, 6))(pil)
    assert isinstance(out, Image.Image) and out.size == (6, 4) and out.mode == "L"


def test_random_resized_crop_draws_within_scale_and_ratio():
    rng = np.random.default_rng(1)
    x = _random_image(1, 40, 50)
    for _ in range(200):
        i, j, h, w = RandomResizedCrop.get_params(x, (0.2, 0.6), (0.5, 2.0), rng)
        assert 0 <= i <= 40 - h and 0 <= j <= 50 - w
        assert 0.2 * 2000 * 0.8 <= h * w <= 0.6 * 2000 * 1.2  # rounding of h and w
        assert 0.5 * 0.8 <= w / h <= 2.0 * 1.2
    # no crop can be that large: the centre crop clamped to the ratio range
    assert RandomResizedCrop.get_params(x, (2.0, 3.0), (0.5, 1.0), rng) == (0, 5, 40, 40)
    t = RandomResizedCrop((6, 5))
    assert t(x, rng).shape == (1, 6, 5) and t(np.zeros((3, 1, 40, 50)), rng).shape == (3, 1, 6, 5)


def test_random_transforms_draw_per_image_from_the_generator():
    x = np.stack([_random_image(3, 9, 9, seed=0)] * 4)
    t = RandomRotation((10, 80), interpolation="bilinear")
    out = t(x, np.random.default_rng(5))
    assert not np.allclose(out[0], out[1])  # each image its own angle
    np.testing.assert_array_equal(out, t(x, np.random.default_rng(5)))
    angle = np.random.default_rng(5).uniform(10, 80)
    np.testing.assert_allclose(out[0], F.rotate(x[0], angle, "bilinear"), atol=1e-6)
    cj = ColorJitter(brightness=(1.5, 1.5))
    np.testing.assert_allclose(cj(x[0]), np.clip(1.5 * x[0], 0, 1), rtol=1e-6)
    assert RandomHorizontalFlip(1.0)(x[0]).tolist() == x[0][..., ::-1].tolist()
    np.testing.assert_allclose(Normalize([0.5] * 3, [2.0] * 3)(x[0]), (x[0] - 0.5) / 2)


def test_random_erasing():
    x = _random_image(3, 20, 20)
    rng = np.random.default_rng(2)
    for _ in range(20):
        out = RandomErasing(p=1.0, scale=(0.1, 0.2), value=(0.5, 0.25, 2.0))(x, rng)
        erased = out != x
        rows, cols = np.nonzero(erased[0])
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert erased[0].sum() == box and 0.1 * 400 * 0.8 <= box <= 0.2 * 400 * 1.2
        assert set(out[2][erased[2]].tolist()) == {2.0}
    assert RandomErasing(p=0.0)(x, rng) is x
    noisy = RandomErasing(p=1.0, value="random")(x, rng)
    assert (noisy != x).any() and noisy.shape == x.shape


def test_transform_argument_errors():
    with pytest.raises(ValueError, match="Resize: size must be a positive int"):
        Resize(0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        Resize(4, interpolation="bicubic")
    with pytest.raises(ValueError, match="RandomResizedCrop: scale must be"):
        RandomResizedCrop(4, scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="RandomRotation: degrees must be >= 0"):
        RandomRotation(-3)
    with pytest.raises(ValueError, match="ColorJitter: hue values must lie within"):
        ColorJitter(hue=(0, 0.7))
    with pytest.raises(ValueError, match="RandomErasing: p must lie in"):
        RandomErasing(p=2)
    with pytest.raises(ValueError, match=r"resize: expected an image \(C, H, W\)"):
        F.resize(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match="adjust_hue: hue_factor must lie in"):
        F.adjust_hue(_random_image(), 0.8)


def _torchvision():
    try:
        import torch
        import torchvision.transforms.functional as TVF
    except Exception:  # not installed, or built for another torch
        pytest.skip("torchvision is not installed")
    return torch, TVF


@pytest.mark.torch
def test_deterministic_transforms_match_torchvision():
    torch, TVF = _torchvision()
    from torchvision.transforms import InterpolationMode

    x = _random_image(3, 13, 11)
    t = torch.from_numpy(x)

    def same(ours, theirs, atol=2e-6):
        np.testing.assert_allclose(ours, theirs.numpy(), atol=atol)

    same(F.resize(x, [7, 5]), TVF.resize(t, [7, 5], antialias=True))
    same(F.resize(x, 6), TVF.resize(t, [6], antialias=True))
    same(F.center_crop(x, [6, 4]), TVF.center_crop(t, [6, 4]))
    same(F.center_crop(x, [15, 14]), TVF.center_crop(t, [15, 14]))
    same(F.resized_crop(x, 2, 1, 8, 7, [9, 9]), TVF.resized_crop(t, 2, 1, 8, 7, [9, 9]))
    same(F.rotate(x, 33.0, "bilinear"), TVF.rotate(t, 33.0, InterpolationMode.BILINEAR), 1e-5)
    same(F.rotate(x, 90.0), TVF.rotate(t, 90.0))
    same(F.rotate(x, 33.0, "bilinear", expand=True),
         TVF.rotate(t, 33.0, InterpolationMode.BILINEAR, expand=True), 1e-5)  # fmt: skip
    for f in (0.4, 1.6):
        same(F.adjust_brightness(x, f), TVF.adjust_brightness(t, f))
        same(F.adjust_contrast(x, f), TVF.adjust_contrast(t, f))
        same(F.adjust_saturation(x, f), TVF.adjust_saturation(t, f))
    same(F.adjust_hue(x, 0.2), TVF.adjust_hue(t, 0.2), atol=1e-5)
    same(F.erase(x, 1, 2, 3, 4, 0.5), TVF.erase(t, 1, 2, 3, 4, torch.tensor(0.5)))
    pil = Image.fromarray((x.transpose(1, 2, 0) * 255).astype(np.uint8))
    same(F.to_tensor(pil), TVF.to_tensor(pil))
