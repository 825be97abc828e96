"""Matscholar element embeddings (Tshitoyan et al., Nature 571, 95, 2019), CGAT's atom inputs.

The 200-d vectors ship with ``matminer``. They are stored in each model as a buffer, so a saved
model carries its own copy and predicts identically whatever matminer version is installed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from torch import nn

from matgl_cgat.graph import ELEMENTS

MATSCHOLAR_DIM = 200


@lru_cache(maxsize=1)
def matscholar_table() -> np.ndarray:
    """(103, 200) float32 array; row ``Z - 1`` is the Matscholar vector of element Z."""
    try:
        path = resources.files("matminer.utils.data_files") / "matscholar_els.json"
        vectors = json.loads(path.read_text())
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ImportError("the Matscholar vectors come from the 'matminer' package: pip install matminer") from exc
    missing = [el for el in ELEMENTS if el not in vectors]
    if missing:
        raise ValueError(f"matscholar_els.json lacks vectors for {missing}")
    return np.array([vectors[el] for el in ELEMENTS], dtype=np.float32)


class ElementEmbedding(nn.Module):
    """Fixed Matscholar vectors followed by a learned, bias-free projection."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("table", torch.from_numpy(matscholar_table()))
        self.proj = nn.Linear(MATSCHOLAR_DIM, dim, bias=False)

    def forward(self, node_type: torch.Tensor) -> torch.Tensor:
        """Embed ``node_type`` (index into ELEMENTS); projects only the 103 table rows, then gathers."""
        return self.proj(self.table)[node_type.long()]
