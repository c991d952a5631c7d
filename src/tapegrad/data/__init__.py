"""Datasets, loaders and augmentation: IDX (MNIST, Fashion-MNIST), CIFAR-10, digits.

Nothing is ever downloaded: a dataset that is not on disk is an error naming the
directory looked in and how to get the files.

Images come out as float32 NCHW arrays scaled to [0, 1]; labels as int64. A
:class:`DataLoader` yields ``(images, labels)`` NumPy batches that the training loop wraps
in Tensors without copying.

The package has four modules, each importable on its own; every name is also here:

- :mod:`tapegrad.data.formats`: the IDX and CIFAR-10 file readers (and a CIFAR writer);
- :mod:`tapegrad.data.datasets`: named datasets found on disk, :func:`load_dataset`;
- :mod:`tapegrad.data.loader`: :class:`TensorDataset`, :class:`DataLoader`, and
  :func:`shard_indices`, the per-rank share of an epoch that data-parallel training uses;
- :mod:`tapegrad.data.transforms`: transforms of batches and of single images
  (torchvision's ``Resize``, ``CenterCrop``, ``RandomResizedCrop``, ``RandomRotation``,
  ``ColorJitter``, ``RandomErasing``, ``ToTensor``...), and :func:`resize_bilinear`;
- :mod:`tapegrad.data.functional`: the image functions behind them;
- :mod:`tapegrad.data.folder`: :class:`ImageFolder` over class folders of image files.
"""

from __future__ import annotations

from .datasets import (
    DATA_ROOT,
    DATASETS,
    DEFAULT_DIRS,
    DatasetNotFoundError,
    load_cifar10,
    load_dataset,
    load_digits,
    load_idx_dataset,
)
from .folder import IMG_EXTENSIONS, ImageFolder, pil_loader
from .formats import (
    CIFAR_CLASSES,
    IDX_GZIP_RATIO,
    IDX_MIN_BUDGET,
    read_cifar_batch,
    read_idx,
    write_cifar_batch,
)
from .loader import DataLoader, TensorDataset, epoch_order, shard_indices
from .transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    Grayscale,
    Normalize,
    Pad,
    RandomCrop,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    Resize,
    ToTensor,
    resize_bilinear,
    sample_generator,
)

__all__ = [
    "CIFAR_CLASSES",
    "DATASETS",
    "DATA_ROOT",
    "DEFAULT_DIRS",
    "IDX_GZIP_RATIO",
    "IDX_MIN_BUDGET",
    "IMG_EXTENSIONS",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "Grayscale",
    "ImageFolder",
    "DataLoader",
    "DatasetNotFoundError",
    "Normalize",
    "Pad",
    "RandomCrop",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomRotation",
    "Resize",
    "ToTensor",
    "TensorDataset",
    "epoch_order",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_idx_dataset",
    "read_cifar_batch",
    "read_idx",
    "resize_bilinear",
    "pil_loader",
    "sample_generator",
    "shard_indices",
    "write_cifar_batch",
]
