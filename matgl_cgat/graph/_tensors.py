"""What CGAT computes from: a batch of atom graphs as plain tensors, whichever library carried it.

The model (``models/``) and its layers never call a graph library. A batch reaches them as
:class:`AtomGraphTensors`: atom types, the sending atom and shell rank of every edge, atoms per
crystal. CGAT's graphs give every atom exactly ``k`` incoming edges, stored receiver by receiver, so
the receiving atoms need not be stored at all and the neighbourhood softmax is a reshape.
:func:`atom_graph_tensors` turns a DGL (MatGL 1.x) or PyG (MatGL 2 and later) graph into this form; one adapter module per graph
library does the library-specific part (``_dgl_adapter.py``, ``_pyg_adapter.py``).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AtomGraphTensors:
    """A batch of CGAT atom graphs.

    Attributes:
        node_type: (N,) int64 element index of every atom (atomic number - 1).
        src: (E,) int64 sending atom of every edge; edges are grouped by receiving atom, ``k`` each, in
            atom order (so the receiver of edge ``e`` is ``e // k``).
        rank: (E,) int64 neighbour-shell rank of every edge, 1..k; float32 for blended ranks (the
            converter's ``blend``), whose fractional part blends the states of two shells.
        num_atoms: (B,) int64 atoms per crystal, crystals contiguous.
    """

    node_type: torch.Tensor
    src: torch.Tensor
    rank: torch.Tensor
    num_atoms: torch.Tensor

    @property
    def num_neighbors(self) -> int:
        """Incoming edges per atom (``k``)."""
        return self.src.shape[0] // max(self.node_type.shape[0], 1)

    @property
    def dst(self) -> torch.Tensor:
        """(E,) receiving atom of every edge."""
        n = self.node_type.shape[0]
        return torch.arange(n, device=self.src.device).repeat_interleave(self.num_neighbors)

    def to(self, device) -> AtomGraphTensors:
        return AtomGraphTensors(*(t.to(device) for t in (self.node_type, self.src, self.rank, self.num_atoms)))


def rank_tensor(rank: torch.Tensor) -> torch.Tensor:
    """Shell ranks as the model reads them: int64 for integer ranks (they index the rank table),
    float32 for blended ones (the converter's ``blend``), whatever dtype a graph library or the cache
    stored them in."""
    return rank.float() if rank.is_floating_point() else rank.long()


def check_receiver_order(dst: torch.Tensor, num_nodes: int, what: str = "graph") -> None:
    """Refuse edges that are not ``k`` per receiving atom, receiver by receiver (the dense layout)."""
    if num_nodes == 0 or dst.shape[0] % num_nodes:
        raise ValueError(f"{what}: {dst.shape[0]} edges on {num_nodes} atoms is not the same number of incoming "
                         "edges per atom; CGAT's graphs come from CGATGraphConverter")
    k = dst.shape[0] // num_nodes
    expected = torch.arange(num_nodes, device=dst.device).repeat_interleave(k)
    if not torch.equal(dst.long(), expected):
        raise ValueError(f"{what}: edges are not stored receiver by receiver with {k} per atom, as "
                         "CGATGraphConverter stores them (was the graph rebuilt or its edges reordered?)")


def _library_of(graph) -> str | None:
    """``"dgl"``, ``"pyg"`` or None, by type (a library that is not imported cannot have made it)."""
    dgl, pyg = sys.modules.get("dgl"), sys.modules.get("torch_geometric.data")
    if dgl is not None and isinstance(graph, dgl.DGLGraph):
        return "dgl"
    if pyg is not None and isinstance(graph, pyg.Data):  # PyG's batches (DataBatch) are Data too
        return "pyg"
    return None


def _adapter(graph, what: str):
    """The adapter module of the library that made ``graph`` (each has ``graph``, ``batch``,
    ``atom_graph_tensors`` and ``graph_fields``); a ``TypeError`` naming ``what`` for anything else."""
    library = _library_of(graph)
    if library is None:
        raise TypeError(f"{what}, got {type(graph).__name__}")
    return importlib.import_module(f"matgl_cgat.graph._{library}_adapter")


def atom_graph_tensors(graph) -> AtomGraphTensors:
    """The tensors of a (batched) atom graph: an :class:`AtomGraphTensors` passes through; a DGL or PyG
    graph goes through its adapter; anything else is a ``TypeError`` naming its type."""
    if isinstance(graph, AtomGraphTensors):
        return graph
    what = "CGAT takes a batch of atom graphs from CGATGraphConverter (DGL or PyG) or AtomGraphTensors"
    return _adapter(graph, what).atom_graph_tensors(graph)


def batch_graphs(graphs: list):
    """One batch of per-crystal graphs, by the library that carries them."""
    if not graphs:
        raise ValueError("batch_graphs: no graphs")
    if isinstance(graphs[0], AtomGraphTensors):
        offsets = torch.cumsum(torch.tensor([0] + [len(g.node_type) for g in graphs[:-1]]), 0)
        return AtomGraphTensors(torch.cat([g.node_type for g in graphs]),
                                torch.cat([g.src + int(o) for g, o in zip(graphs, offsets)]),
                                torch.cat([g.rank for g in graphs]), torch.cat([g.num_atoms for g in graphs]))
    return _adapter(graphs[0], "batch_graphs: unknown graph type").batch(graphs)


def make_graph(src, dst, node_type, rank, pbc_offset, frac_coords):
    """One crystal's graph in the installed MatGL's graph library (:func:`graph_library`)."""
    from ._backend import graph_library

    adapter = importlib.import_module(f"matgl_cgat.graph._{graph_library()}_adapter")
    return adapter.graph(src, dst, node_type, rank, pbc_offset, frac_coords)


def graph_fields(graph) -> dict:
    """``{src, node_type, rank, pbc_offset, frac_coords}`` of one crystal's graph from either library:
    what :func:`make_graph` rebuilds it from, in any library (the graph cache stores these)."""
    return _adapter(graph, "graph_fields: unknown graph type").graph_fields(graph)
