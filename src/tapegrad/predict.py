"""``tapegrad predict CHECKPOINT IMAGE_OR_FOLDER``: the top-k classes of PNG/JPEG images.

Each image is read with Pillow (the ``image`` extra), converted to the model's channels
(grayscale ``L`` for one channel, ``RGB`` for three; transparency is flattened onto
black), resized to the side of the dataset the model was trained on, padded or resized to
the model's input like the training data, scaled to [0, 1] and normalised with that
dataset's statistics. The model runs through :func:`tapegrad.inference.optimize`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

FASHION_MNIST = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")  # fmt: skip
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")  # fmt: skip
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": FASHION_MNIST,
    "mnist": tuple(str(i) for i in range(10)),
    "digits": tuple(str(i) for i in range(10)),
    "cifar10": CIFAR10,
}
# the side of each dataset's images (before padding or resizing to the model's input)
DATA_SIDE = {"fashion-mnist": 28, "mnist": 28, "cifar10": 32}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``tapegrad predict``."""
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("images", help="a PNG/JPEG image, or a folder of them")
    p.add_argument("--top-k", type=int, default=5, help="classes to print per image")
    p.add_argument("--model", default=None, help="zoo model (default: from the checkpoint)")
    p.add_argument(
        "--labels", default=None, metavar="FILE", help="class names, one per line, in order"
    )
    p.add_argument("--threads", type=int, default=None, help="threads for kernels and BLAS")


def _image_module() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "tapegrad predict needs Pillow to read images: pip install 'tapegrad[image]'"
        ) from exc
    return Image


def list_images(path: str | Path) -> list[Path]:
    """The image itself, or the PNG/JPEG files of a folder (sorted by name)."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not p.exists():
        raise FileNotFoundError(f"no image or folder at {p}")
    return [p]


def preprocess(path: str | Path, info: dict[str, Any]) -> np.ndarray:
    """One image as the model's input (C, S, S) float32, prepared as the training data was.

    ``info`` is :func:`tapegrad.inference.load_model`'s: ``in_channels`` (1 or 3),
    ``input_size`` and ``data`` (the training set, for its side and statistics).
    """
    from .data import Pad, resize_bilinear
    from .train import _NORMALISE

    image_mod = _image_module()
    c, side = int(info["in_channels"]), int(info["input_size"])
    if c not in (1, 3):
        raise ValueError(f"predict: models with {c} input channels take no images (1 or 3)")
    with image_mod.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            back = image_mod.new("RGBA", im.size, (0, 0, 0, 255))
            im = image_mod.alpha_composite(back, im)
        im = im.convert("L" if c == 1 else "RGB")
        data = info.get("data")
        native = DATA_SIDE.get(data, side)
        if im.size != (native, native):
            im = im.resize((native, native), image_mod.BILINEAR)
        x = np.asarray(im, dtype=np.float32) / 255.0
    x = x.reshape(native, native, -1).transpose(2, 0, 1)[None]
    if native < side:
        x = Pad((side - native) // 2)(x)
    elif native > side:
        x = resize_bilinear(x, side)
    if data in _NORMALISE:
        mean, std = _NORMALISE[data]
        if len(mean) != c:
            mean, std = mean[:1] * c, std[:1] * c
        x = (x - np.asarray(mean, np.float32).reshape(1, -1, 1, 1)) / np.asarray(
            std, np.float32
        ).reshape(1, -1, 1, 1)
    return np.ascontiguousarray(x[0], dtype=np.float32)


def top_k(logits: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per row of logits (N, classes): the k (class, probability) pairs, most likely first."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    prob = z / z.sum(axis=1, keepdims=True)
    k = min(k, prob.shape[1])
    order = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    return [[(int(i), float(row[i])) for i in idx] for row, idx in zip(prob, order)]


def main(args: argparse.Namespace) -> int:
    """Run ``tapegrad predict``; returns the exit status (errors go to stderr, no traceback).

    0 when every image was classified, 1 when some could not be read (the others are
    still printed) or the checkpoint cannot be used, 2 when Pillow is missing.
    """
    from .checkpoint import CheckpointError
    from .inference import load_model, optimize

    if args.top_k < 1:
        print(f"tapegrad predict: --top-k must be at least 1, got {args.top_k}", file=sys.stderr)
        return 2
    try:
        _image_module()
    except ImportError as e:
        print(f"tapegrad predict: {e}", file=sys.stderr)
        return 2
    if args.threads:
        from .kernels import set_num_threads

        set_num_threads(args.threads)
    try:
        model, info = load_model(args.checkpoint, args.model)
        files = list_images(args.images)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        print(f"tapegrad predict: {e}", file=sys.stderr)
        return 1
    if getattr(model, "task", "classification") != "classification":
        print(
            f"tapegrad predict: {info['name']} is a {model.task} model; it has no classes",
            file=sys.stderr,
        )
        return 1
    if not files:
        print(f"tapegrad predict: no PNG or JPEG images in {args.images}", file=sys.stderr)
        return 1
    names: tuple[str, ...] | list[str] = CLASS_NAMES.get(info.get("data") or "", ())
    if args.labels:
        try:
            names = [ln.strip() for ln in Path(args.labels).read_text().splitlines() if ln.strip()]
        except OSError as e:
            print(f"tapegrad predict: cannot read --labels: {e}", file=sys.stderr)
            return 1
    batch, ok, status = [], [], 0
    for f in files:
        try:
            batch.append(preprocess(f, info))
            ok.append(f)
        except (OSError, ValueError, SyntaxError) as e:  # Pillow's UnidentifiedImageError
            print(f"tapegrad predict: {f}: cannot read the image ({e})", file=sys.stderr)
            status = 1
    if not batch:
        return status
    logits = optimize(model)(np.stack(batch)).data
    if names and len(names) != logits.shape[1]:
        print(
            f"tapegrad predict: {len(names)} class names for {logits.shape[1]} classes; "
            "printing class indices",
            file=sys.stderr,
        )
        names = ()
    width = max((len(n) for n in names), default=0)
    for f, row in zip(ok, top_k(logits, args.top_k)):
        print(f)
        for rank, (cls, p) in enumerate(row, 1):
            label = names[cls] if names else str(cls)
            print(f"  {rank}  {cls:>3}  {label:<{width}}  {100 * p:6.2f}%")
    return status
