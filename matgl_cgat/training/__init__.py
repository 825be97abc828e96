"""How a model trains: ``TrainConfig`` (every default, named recipes), the Lightning module
(any number of targets, missing labels masked), and ``fit(model, train, val, config)``.

Everything that trains in this package goes through :func:`fit`: ``CGAT.finetune`` and
:func:`matgl_cgat.transfer.finetune`, ``mgl-cgat train|finetune|quickstart``, the scaling runner and
the examples.
"""

from __future__ import annotations

from ._compile import AUTO_MIN_PASSES, COMPILE_CHOICES, COMPILE_PARTS, compile_core, uncompile_core
from ._config import RECIPES, TrainConfig, recipe
from ._data import GraphBatch, GraphDataModule, collate_graphs, dataset_targets, train_labels
from ._fit import FitResult, fit
from ._module import TrainingModule, point_loss
from ._run import RunFolder, RunFolderMismatch, SafeCheckpointIO, load_checkpoint, read_metrics

__all__ = [
    "AUTO_MIN_PASSES",
    "COMPILE_CHOICES",
    "COMPILE_PARTS",
    "RECIPES",
    "FitResult",
    "GraphBatch",
    "GraphDataModule",
    "RunFolder",
    "RunFolderMismatch",
    "SafeCheckpointIO",
    "TrainConfig",
    "TrainingModule",
    "collate_graphs",
    "compile_core",
    "uncompile_core",
    "dataset_targets",
    "train_labels",
    "fit",
    "load_checkpoint",
    "point_loss",
    "read_metrics",
    "recipe",
]
