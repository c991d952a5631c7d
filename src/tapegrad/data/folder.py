"""Image datasets read from class folders: :class:`ImageFolder` (Pillow, the ``image``
extra)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "ImageFolder needs Pillow to read images: `pip install tapegrad[image]` "
            "(or `pip install Pillow`)"
        ) from None
    return Image


def pil_loader(path: str | os.PathLike) -> Any:
    """Open an image file with Pillow as RGB (torchvision's default loader)."""
    image = _pil()
    with open(path, "rb") as f:
        return image.open(f).convert("RGB")


def find_classes(directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
    """The sorted names of the sub-folders of ``directory`` and their class indices.

    Raises
    ------
    FileNotFoundError
        ``directory`` is missing or holds no sub-folder.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"ImageFolder: {directory} is not a directory")
    classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"ImageFolder: no class folder found in {directory}")
    return classes, {c: i for i, c in enumerate(classes)}


class ImageFolder:
    """Images in ``root/<class>/**/<file>``, item ``i`` being ``(image, class_index)``
    (torchvision's ``ImageFolder``).

    Classes are the sorted sub-folder names; each class's files are walked in sorted
    order. Images open with Pillow as RGB (``loader``), then go through ``transform`` (for
    example ``Compose([Resize(32), ToTensor()])``, giving (3, H, W) float32 arrays); the
    class index goes through ``target_transform``.

    Parameters
    ----------
    root : str or os.PathLike
    transform, target_transform : callable, optional
    loader : callable, optional
        Path -> image (default :func:`pil_loader`).
    is_valid_file : callable, optional
        Path -> bool choosing the files (default: the extensions in ``IMG_EXTENSIONS``).
    allow_empty : bool, default False
        Accept class folders without a valid file.

    Attributes
    ----------
    classes : list of str
    class_to_idx : dict
    samples : list of (str, int)
        File paths and class indices (also ``imgs``).
    targets : list of int

    Raises
    ------
    ImportError
        Pillow is missing (``pip install tapegrad[image]``) and no ``loader`` was given.
    FileNotFoundError
        ``root`` holds no class folder, or a class folder holds no image (unless
        ``allow_empty``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        loader: Callable[[str], Any] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> None:
        if loader is None:
            _pil()  # a clear error now rather than at the first item
            loader = pil_loader
        self.root = str(root)
        self.transform, self.target_transform, self.loader = transform, target_transform, loader
        self.classes, self.class_to_idx = find_classes(root)
        valid = is_valid_file or (lambda p: p.lower().endswith(IMG_EXTENSIONS))
        self.samples: list[tuple[str, int]] = []
        empty = []
        for cls in self.classes:
            found = []
            for dirpath, _, fnames in sorted(os.walk(Path(root) / cls, followlinks=True)):
                for fname in sorted(fnames):
                    path = os.path.join(dirpath, fname)
                    if valid(path):
                        found.append((path, self.class_to_idx[cls]))
            if not found:
                empty.append(cls)
            self.samples += found
        if empty and not allow_empty:
            raise FileNotFoundError(
                f"ImageFolder: no image file in the class folder(s) {empty} of {root}; "
                f"extensions read: {', '.join(IMG_EXTENSIONS)}"
            )
        self.imgs = self.samples
        self.targets = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, target = self.samples[index]
        img = self.loader(path)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self) -> str:
        return f"ImageFolder(root={self.root!r}, {len(self)} images, {len(self.classes)} classes)"
