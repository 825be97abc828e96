"""On-disk graph cache: shards of converted graphs, written atomically, keyed by everything that matters.

Layout of ``cache_dir/<key>/``: ``shard_00000.bin`` (DGL graphs plus their lattices) with
``shard_00000.json`` (ids, labels and skipped records of that shard), and ``index.json`` once every
shard is done. A shard is written to a temporary name and renamed, so a killed job leaves no partial
shard; a restarted job reuses the shards that exist and converts only the rest. The key hashes the
source's content (file names, sizes and SHA-256 hashes, or the in-memory structures themselves), the
reader settings and every converter setting, so changing any of them never reuses a stale cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dgl
import torch

from matgl_cgat._io import atomic_path, atomic_write_text

#: Bumped whenever the shard layout or graph content changes.
CACHE_FORMAT = 1


def cache_key(description: dict) -> str:
    """Stable short hash of a JSON-serialisable description."""
    text = json.dumps({"format": CACHE_FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def shard_paths(root: Path, index: int) -> tuple[Path, Path]:
    return root / f"shard_{index:05d}.bin", root / f"shard_{index:05d}.json"


def write_shard(root: Path, index: int, graphs: list, lattices: list, meta: dict) -> None:
    """Write graphs and metadata of one shard atomically (graphs first; the metadata marks completion)."""
    bin_path, meta_path = shard_paths(root, index)
    with atomic_path(bin_path) as tmp:
        if graphs:
            dgl.save_graphs(tmp, graphs, {"lattice": torch.stack(lattices)})
        # a shard whose records were all skipped keeps an empty file: it is complete, nothing to load
    atomic_write_text(meta_path, json.dumps(meta))


def read_shard_meta(root: Path, index: int) -> dict | None:
    """Metadata of a finished shard, or None when the shard is absent or incomplete."""
    bin_path, meta_path = shard_paths(root, index)
    if not (bin_path.is_file() and meta_path.is_file()):
        return None
    try:
        return json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_shard_graphs(root: Path, index: int) -> tuple[list, torch.Tensor]:
    """Graphs and (n, 3, 3) lattices of one shard."""
    graphs, extra = dgl.load_graphs(str(shard_paths(root, index)[0]))
    return graphs, extra["lattice"]
