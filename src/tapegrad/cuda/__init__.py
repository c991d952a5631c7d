"""``tapegrad.cuda``: tapegrad has CPU kernels only, so no CUDA device is ever available."""

from __future__ import annotations

__all__ = ["device_count", "is_available", "manual_seed", "manual_seed_all"]


def is_available() -> bool:
    """False: tapegrad runs on the CPU."""
    return False


def device_count() -> int:
    """0: tapegrad runs on the CPU."""
    return 0


def manual_seed(seed: int) -> None:
    """Accepted and ignored (there is no CUDA generator), as PyTorch does without CUDA."""


def manual_seed_all(seed: int) -> None:
    """Accepted and ignored (there is no CUDA generator), as PyTorch does without CUDA."""
