"""Data in: readers for crystal data files, split files and the location of the shared data."""

from __future__ import annotations

from ._errors import DataError
from ._mgl import graph_dataset
from ._jsonl import Records, iter_jsonl, load_splits, read_jsonl
from ._paths import ENV_VAR, default_data_dir

__all__ = ["ENV_VAR", "DataError", "Records", "default_data_dir",
    "graph_dataset", "iter_jsonl", "load_splits", "read_jsonl"]
