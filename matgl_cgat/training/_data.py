"""Batches for training: one collate function, per-epoch seeded shuffling, a Lightning data module.

Items are MatGL's ``(graph, lattice, state, labels)`` tuples with ``labels`` a ``{target: value}``
dict (what :class:`matgl_cgat.data.GraphDataset` and ``MGLDataset`` return). A batch holds the
batched graph and a ``(B, T)`` label tensor in a fixed target order, NaN where a structure has no
label for a target (the loss masks those).

Shuffling uses ``torch.utils.data.DistributedSampler`` in every case (with one replica when there
is one process): its order depends only on the seed and the epoch (Lightning calls ``set_epoch``),
so a run resumed at epoch k sees the same batches as one that never stopped, and with N processes
each reads its own 1/N of the items (and so of the on-disk graph cache). Validation items are
sharded without repeats (padding items carry no label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import lightning as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from matgl_cgat.graph import batch_graphs


@dataclass
class GraphBatch:
    """A training batch: batched graph and ``(B, T)`` labels (NaN = missing)."""

    graph: Any  # the batched graph of the stack's graph library (or AtomGraphTensors)
    labels: torch.Tensor

    def to(self, device) -> GraphBatch:
        return GraphBatch(self.graph.to(device), self.labels.to(device))

    def __len__(self) -> int:
        return self.labels.shape[0]


def dataset_targets(dataset) -> tuple[str, ...]:
    """Target names a dataset's items carry, in order."""
    names = getattr(dataset, "returned_targets", None)
    if names:
        return tuple(names)
    if len(dataset) == 0:
        raise ValueError("empty dataset")
    labels = dataset[0][3]
    if not isinstance(labels, dict) or not labels:
        raise TypeError("dataset items must be (graph, lattice, state, {target: label}) tuples")
    return tuple(labels)


def collate_graphs(items: Sequence[tuple], targets: Sequence[str]) -> GraphBatch:
    """Batch ``(graph, lattice, state, labels)`` items; labels become a ``(B, len(targets))`` tensor."""
    graphs = [item[0] for item in items]
    rows = []
    for item in items:
        labels = item[3]
        rows.append([float(labels[t]) if t in labels else float("nan") for t in targets])
    return GraphBatch(batch_graphs(graphs), torch.tensor(rows, dtype=torch.float32))


class _ValidationShard(Sampler):
    """Rank r of N validates items r, r + N, ...; ranks with one item fewer get a padding index (-1).

    Every rank runs the same number of batches (as ``DistributedDataParallel`` needs), and the padding
    items carry no label (see :class:`_Padded`), so no structure counts twice in the validation MAE
    (``DistributedSampler`` would repeat real items instead).
    """

    def __init__(self, n: int, world: int, rank: int):
        self.n, self.world, self.rank = n, world, rank

    def __iter__(self):
        own = list(range(self.rank, self.n, self.world))
        return iter(own + [-1] * (len(self) - len(own)))

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)


class _Padded(Dataset):
    """Item -1 is a copy of item 0 without labels: it runs through the model and counts nowhere."""

    def __init__(self, dataset, targets: Sequence[str]):
        self.dataset, self.targets = dataset, tuple(targets)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        if i >= 0:
            return self.dataset[i]
        g, lattice, state, _ = self.dataset[0]
        return g, lattice, state, {t: float("nan") for t in self.targets}


class GraphDataModule(pl.LightningDataModule):
    """Train and validation loaders; samplers are built once the process count and rank are known."""

    def __init__(self, train, val, targets: Sequence[str], batch_size: int, seed: int, num_workers: int = 0):
        super().__init__()
        self.train_set, self.val_set = train, val
        self.targets, self.batch_size, self.seed, self.num_workers = tuple(targets), batch_size, seed, num_workers

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if shuffle:
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        else:
            sampler, dataset = _ValidationShard(len(dataset), world, rank), _Padded(dataset, self.targets)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=partial(collate_graphs, targets=self.targets),
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []


def train_labels(ds, targets) -> np.ndarray:
    """``(N, T)`` labels of a dataset (NaN where missing), without loading graphs when it can."""
    labels = getattr(ds, "labels", None)
    if isinstance(labels, dict) and all(t in labels for t in targets):
        return np.stack([np.asarray(labels[t], dtype=float) for t in targets], axis=1)
    return np.array([[float(ds[i][3].get(t, np.nan)) for t in targets] for i in range(len(ds))])
