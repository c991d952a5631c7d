"""Data-parallel training over MPI ranks with tapegrad.distributed.

    mpirun -n 2 python examples/mpi_training.py --epochs 1
    mpirun -n 2 python examples/mpi_training.py --quick      # 1,024 images
    (as root: OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)

Every rank holds LeNet-5, takes its share of each global batch, and the gradients are
averaged with one Allreduce per step (DataParallel.sync_gradients). Rank 0 prints and
writes the checkpoint. Without mpirun it runs as a single rank.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import data, distributed, optim, zoo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256, help="global batch over all ranks")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--out", default="runs/mpi_lenet5", help="checkpoint folder, shared by every rank"
    )
    p.add_argument("--quick", action="store_true", help="1,024 training images, 1 epoch")
    args = p.parse_args(argv)

    rank, world = distributed.init()  # threads: the node's cores / ranks on the node
    if args.batch_size % world:
        distributed.print0(f"--batch-size {args.batch_size} is not a multiple of {world} ranks")
        return 2
    limit = 1024 if args.quick else None
    epochs = 1 if args.quick else args.epochs
    x, y = data.load_dataset("fashion-mnist", "train", args.data_dir, limit)
    x_test, y_test = data.load_dataset("fashion-mnist", "test", args.data_dir, 1000)
    norm = data.Normalize([0.2860], [0.3530])
    loader = data.DataLoader(
        data.TensorDataset(norm(x), y),
        args.batch_size // world,  # this rank's share of each global batch
        shuffle=True,
        seed=0,
        drop_last=True,
        rank=rank,
        world_size=world,
    )

    tg.manual_seed(rank)  # different on each rank: DataParallel broadcasts rank 0's weights
    model = distributed.DataParallel(zoo.lenet5())
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for epoch in range(1, epochs + 1):
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(tg.tensor(xb)), yb)
            opt.zero_grad()
            loss.backward()
            model.sync_gradients()  # one bucketed Allreduce: the mean over ranks
            opt.step()
        model.eval()
        with tg.no_grad():
            pred = model(tg.tensor(norm(x_test))).numpy().argmax(1)
        acc = float((pred == y_test).mean())
        distributed.print0(
            f"epoch {epoch}: {world} rank(s), last loss {loss.item():.4f}, "
            f"test accuracy {100 * acc:.2f}% ({len(y_test)} images), "
            f"{model.allreduce_calls} Allreduce calls"
        )
    # every rank passes the same path: rank 0 writes it, the others wait for it
    path = Path(args.out) / "last.safetensors"
    if distributed.is_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)
    distributed.save_checkpoint({"model": model.state_dict(), "epoch": epochs}, path)
    distributed.print0(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
