"""tapegrad.utils.data: PyTorch's Dataset / TensorDataset / DataLoader protocol."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
from tapegrad.utils.data import DataLoader, Dataset, TensorDataset, default_collate


def test_tensor_dataset_and_loader_give_tensors():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    ds = TensorDataset(x, tg.tensor(y))
    assert len(ds) == 10
    xi, yi = ds[3]
    assert isinstance(xi, tg.Tensor) and xi.numpy().tolist() == [6.0, 7.0] and yi.item() == 3
    batches = list(DataLoader(ds, batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    assert batches[0][1].dtype == np.int64 and batches[2][1].numpy().tolist() == [8, 9]
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2


def test_shuffle_follows_manual_seed_and_changes_per_epoch():
    ds = TensorDataset(np.arange(32))

    def orders():
        tg.manual_seed(7)
        dl = DataLoader(ds, batch_size=8, shuffle=True)
        return [np.concatenate([b[0].numpy() for b in dl]) for _ in range(2)]

    a, b = orders(), orders()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1]) and sorted(a[0]) == list(range(32))


class Squares(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": np.full(3, i, np.float32), "y": i * i, "pair": (float(i), i)}


def test_per_item_dataset_with_default_and_custom_collate():
    batch = next(iter(DataLoader(Squares(), batch_size=3)))
    assert batch["x"].shape == (3, 3) and batch["y"].numpy().tolist() == [0, 1, 4]
    assert batch["pair"][0].dtype == np.float32 and batch["pair"][1].dtype == np.int64
    dl = DataLoader(Squares(), batch_size=2, collate_fn=lambda items: len(items))
    assert list(dl) == [2, 2, 1]
    assert default_collate([(1, 2.0), (3, 4.0)])[0].numpy().tolist() == [1, 3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="DataLoader: batch_size must be a positive int"):
        DataLoader(Squares(), batch_size=0)
    with pytest.raises(TypeError, match="DataLoader: dataset must define __getitem__"):
        DataLoader(3)
    with pytest.raises(ValueError, match="TensorDataset: tensor 1 has shape"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(NotImplementedError, match="Dataset.__len__ is not defined"):
        len(Dataset())
    with pytest.raises(TypeError, match="default_collate: cannot batch items of type object"):
        default_collate([object()])
