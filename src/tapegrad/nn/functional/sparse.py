"""Lookup tables: embedding."""

from __future__ import annotations

import numpy as np

from ...ops.nn_extra import Embedding
from ...tensor import Tensor
from ._common import _t


def embedding(input: Tensor | np.ndarray, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, embedding_dim) at integer ``input`` (any shape).

    The result has shape ``input.shape + (embedding_dim,)``. The ``padding_idx`` row
    receives no gradient. Indices out of range are an IndexError.
    """
    w = _t(weight, "embedding", "weight")
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if padding_idx is not None:
        n = w.shape[0] if w.ndim else 0
        if not -n <= padding_idx < n:
            raise ValueError(
                f"embedding: padding_idx {padding_idx} is out of range for {n} embeddings"
            )
        padding_idx = int(padding_idx) % n
    return Embedding.apply(w, idx, padding_idx=padding_idx)
