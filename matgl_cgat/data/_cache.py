"""On-disk graph cache: shards of converted graphs, written atomically, keyed by everything that matters.

Layout of ``cache_dir/<key>/``: ``shard_00000.pt`` (the graphs of a shard as plain tensors: atom types,
fractional coordinates, senders, shell ranks and periodic offsets of every edge, atoms and edges per
graph, lattices) with ``shard_00000.json`` (ids, labels and skipped records of that shard), and
``index.json`` once every shard is done. A shard is written to a temporary name and renamed, so a
killed job leaves no partial shard; a restarted job reuses the shards that exist and converts only
the rest. The key hashes the source's content (file names, sizes and SHA-256 hashes, or the in-memory
structures themselves), the reader settings and every converter setting, so changing any of them
never reuses a stale cache.

The shards hold tensors only, read with ``torch.load(weights_only=True)`` (a cache file cannot run
code), and no graph library's own format: graphs are rebuilt in the installed MatGL's library when a
shard is loaded, so a cache built on the DGL stack serves the PyG stack and back.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from matgl_cgat._io import atomic_path, atomic_write_text

#: Bumped whenever the shard layout or graph content changes (2: tensors instead of DGL's format).
CACHE_FORMAT = 2
#: Stored dtypes: small integers stay small on disk.
_DTYPES = {"node_type": torch.int16, "rank": torch.int16, "src": torch.int32, "pbc_offset": torch.int16,
           "frac_coords": torch.float32}


def cache_key(description: dict) -> str:
    """Stable short hash of a JSON-serialisable description."""
    text = json.dumps({"format": CACHE_FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def shard_paths(root: Path, index: int) -> tuple[Path, Path]:
    return root / f"shard_{index:05d}.pt", root / f"shard_{index:05d}.json"


def graphs_to_tensors(graphs: list, lattices: list) -> dict[str, torch.Tensor]:
    """The graphs of a shard as one dict of concatenated tensors (per-graph counts to split them)."""
    from matgl_cgat.graph import graph_fields

    fields = [graph_fields(g) for g in graphs]
    real = {f["rank"].is_floating_point() for f in fields}
    if len(real) > 1:
        raise ValueError("a shard mixes integer and blended shell ranks; one converter builds every graph of a cache")
    dtypes = {**_DTYPES, "rank": torch.float32} if real == {True} else _DTYPES  # blended ranks are real numbers
    out = {name: torch.cat([f[name] for f in fields]).to(dtype) for name, dtype in dtypes.items()}
    if not torch.equal(out["pbc_offset"].float(), torch.cat([f["pbc_offset"] for f in fields]).float()):
        raise ValueError("periodic offsets of a graph are not whole lattice vectors; the cache stores them as integers")
    out["num_nodes"] = torch.tensor([len(f["node_type"]) for f in fields], dtype=torch.int64)
    out["num_edges"] = torch.tensor([len(f["src"]) for f in fields], dtype=torch.int64)
    out["lattice"] = torch.stack(lattices).reshape(-1, 3, 3).float()
    return out


def tensors_to_graphs(data: dict[str, torch.Tensor]) -> list:
    """Rebuild a shard's graphs, in the installed MatGL's graph library, from :func:`graphs_to_tensors`."""
    from matgl_cgat.graph import make_graph
    from matgl_cgat.graph._tensors import rank_tensor

    graphs = []
    node_parts = torch.split(torch.arange(int(data["num_nodes"].sum())), data["num_nodes"].tolist())
    edge_parts = torch.split(torch.arange(int(data["num_edges"].sum())), data["num_edges"].tolist())
    for nodes, edges in zip(node_parts, edge_parts):
        n, e = len(nodes), len(edges)
        src = data["src"][edges].long()
        dst = torch.arange(n).repeat_interleave(e // n) if n else torch.zeros(0, dtype=torch.long)
        graphs.append(make_graph(src, dst, data["node_type"][nodes].long(), rank_tensor(data["rank"][edges]),
                                 data["pbc_offset"][edges].float(), data["frac_coords"][nodes]))
    return graphs


def write_shard(root: Path, index: int, graphs: list, lattices: list, meta: dict) -> None:
    """Write graphs and metadata of one shard atomically (graphs first; the metadata marks completion)."""
    bin_path, meta_path = shard_paths(root, index)
    with atomic_path(bin_path) as tmp:
        # a shard whose records were all skipped keeps an empty dict: it is complete, nothing to load
        torch.save(graphs_to_tensors(graphs, lattices) if graphs else {}, tmp)
    # the size lets a later run tell a shard damaged since (a truncated copy, a full disk) from a whole one
    atomic_write_text(meta_path, json.dumps({**meta, "bytes": bin_path.stat().st_size}))


def read_shard_meta(root: Path, index: int) -> dict | None:
    """Metadata of a finished shard, or None when the shard is absent or incomplete."""
    bin_path, meta_path = shard_paths(root, index)
    if not (bin_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or ("bytes" in meta and meta["bytes"] != bin_path.stat().st_size):
        return None  # damaged after it was written: converted again
    return meta


def load_shard_graphs(root: Path, index: int) -> tuple[list, torch.Tensor]:
    """Graphs and (n, 3, 3) lattices of one shard (read weights-only: tensors, never code)."""
    path = shard_paths(root, index)[0]
    try:
        data = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file raises many types
        from ._errors import DataError

        raise DataError(f"{path}: graph cache shard unreadable ({type(exc).__name__}: {exc}); delete {root} and "
                        "load the data again") from None
    if not data:
        return [], torch.zeros(0, 3, 3)
    return tensors_to_graphs(data), data["lattice"]
