"""Data in: ``load_dataset`` for the field's formats, an on-disk graph cache, splits, ``DataError``."""

from __future__ import annotations

from ._dataset import GraphDataset, load_dataset
from ._errors import DataError
from ._higher_fidelity import TARGETS, HigherFidelityTarget, Yardstick, read_columns, target_info, yardstick_table, yardstick_values
from ._mgl import batch_line_graph, graph_dataset, line_graph_in_batches, mgl_collate
from ._paths import ENV_VAR, default_data_dir
from ._prepare import model_splits, prepare_splits
from ._sources import Records, read_structures
from ._splits import Splits, load_splits, nested_subsets, random_split, split_from_file, split_per_target

__all__ = [
    "ENV_VAR",
    "TARGETS",
    "HigherFidelityTarget",
    "Yardstick",
    "read_columns",
    "target_info",
    "yardstick_table",
    "yardstick_values",
    "DataError",
    "GraphDataset",
    "Records",
    "Splits",
    "default_data_dir",
    "graph_dataset",
    "batch_line_graph",
    "line_graph_in_batches",
    "mgl_collate",
    "load_dataset",
    "load_splits",
    "nested_subsets",
    "model_splits",
    "prepare_splits",
    "random_split",
    "read_structures",
    "split_from_file",
    "split_per_target",
]
