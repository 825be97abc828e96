"""A tiny training run in its own process, for the tests that need one: DDP over 2 CPU processes
(Lightning re-launches this script once per extra rank) and a run killed with SIGKILL and resumed.

    python tests/scripts/train_tiny.py OUT [--devices 2 --strategy ddp] [--die-at EPOCH:BATCH]
        [--cache DIR] [--record-items]

Writes OUT/rank<r>.json per rank: the final weights' digest, the items the rank trained on and the
run's summary; rank 0 also saves the model (``workflows.train``) to OUT/model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lightning as pl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from tests.conftest import make_model, random_structure  # noqa: E402


def tiny_data(cache: str | None):
    from matgl_cgat.data import load_dataset

    structures = [random_structure(i, n=3 + i % 3, elements=("O", "Mg", "Zn")) for i in range(41)]
    labels = [1.0 + 3.0 * s.composition.get_atomic_fraction("O") for s in structures]
    ds = load_dataset(structures, "y", labels=labels, cache_dir=cache, progress=False, workers=1)
    # 9 validation structures: 2 processes validate 5 and 4 (+ 1 unlabelled padding item)
    return ds.subset(np.arange(24)), ds.subset(np.arange(24, 33)), ds.subset(np.arange(33, 41))


class _Die(pl.Callback):
    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--die-at", default=None)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from matgl_cgat.data import GraphDataset
    from matgl_cgat.training import recipe
    from matgl_cgat.training._run import tensor_digest
    from matgl_cgat.workflows import train

    seen: list[int] = []
    getitem = GraphDataset.__getitem__

    def recording(self, i):
        if len(self) == 24:  # the training set
            seen.append(int(self._rows[i]))
        return getitem(self, i)

    GraphDataset.__getitem__ = recording
    tr, va, te = tiny_data(args.cache)
    if args.die_at:
        import matgl_cgat.training._fit as fit_module

        epoch, batch = (int(x) for x in args.die_at.split(":"))
        original = fit_module.KeepFrozenInEval

        class DyingKeepFrozen(original):  # rides along with the trainer's own callbacks
            def on_train_batch_end(self, trainer, module, outputs, batch_, batch_idx):
                _Die(epoch, batch).on_train_batch_end(trainer, module, outputs, batch_, batch_idx)

        fit_module.KeepFrozenInEval = DyingKeepFrozen
    model = make_model()
    config = recipe("cpu", epochs=args.epochs, lr=3e-3, batch_size=4, progress=False, accelerator="cpu",
                    devices=args.devices, strategy=args.strategy, precision=args.precision)
    from matgl_cgat.data import Splits
    from matgl_cgat.training import load_checkpoint

    parts = Splits(tr, va, te, source="tests/scripts/train_tiny.py", split="tiny")
    trained, metrics = train(model, parts, "y", args.out, config=config, card={"name": "tiny"})
    result = trained.fit_result
    rank = int(os.environ.get("LOCAL_RANK", 0))
    summary = {"rank": rank, "world_size": result.world_size, "is_global_zero": result.is_global_zero,
               "weights": tensor_digest(trained.state_dict()), "first_epoch_items": sorted(seen[: -(-24 // result.world_size)]),  # one epoch's share
               "last_weights": tensor_digest(load_checkpoint(args.out / "run" / "checkpoints" / "last.ckpt")["state_dict"]),
               "best_val_mae": result.best_val_mae, "best_epoch": result.best_epoch,
               "resumed_from_epoch": result.resumed_from_epoch, "test_metrics": metrics}
    (args.out / f"rank{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
