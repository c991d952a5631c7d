"""``tapegrad.utils``: PyTorch-style utilities (:mod:`tapegrad.utils.data`)."""

from . import data

__all__ = ["data"]
