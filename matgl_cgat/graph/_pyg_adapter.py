"""PyTorch Geometric (MatGL 2 and later): CGAT's graphs as PyG ``Data`` objects and back as tensors.

A graph holds what MatGL's own PyG converters store (``edge_index`` as ``[src, dst]``, ``node_type``,
``frac_coords``, ``pbc_offset``) plus CGAT's shell ``rank`` per edge, edges receiver by receiver.
PyG's ``Batch`` offsets ``edge_index`` and records each atom's crystal (``batch``, ``ptr``).
"""

from __future__ import annotations

import torch

from ._tensors import AtomGraphTensors, check_receiver_order, rank_tensor


def graph(src, dst, node_type, rank, pbc_offset, frac_coords):
    from torch_geometric.data import Data

    g = Data(num_nodes=int(node_type.shape[0]), edge_index=torch.stack([src, dst]).long())
    g.node_type = node_type.long()
    g.rank = rank_tensor(rank)
    g.pbc_offset = pbc_offset
    g.frac_coords = frac_coords
    return g


def batch(graphs: list):
    from torch_geometric.data import Batch

    return Batch.from_data_list(graphs)


def atom_graph_tensors(g) -> AtomGraphTensors:
    src, dst = g.edge_index[0], g.edge_index[1]
    n = int(g.num_nodes)
    check_receiver_order(dst, n, "PyG graph")
    ptr = getattr(g, "ptr", None)
    if ptr is not None:
        num_atoms = torch.diff(ptr).long()
    elif getattr(g, "batch", None) is not None:
        num_atoms = torch.bincount(g.batch, minlength=int(g.num_graphs)).long()
    else:  # one crystal, not batched
        num_atoms = torch.tensor([n], device=src.device)
    return AtomGraphTensors(node_type=g.node_type.long(), src=src.long(), rank=rank_tensor(g.rank), num_atoms=num_atoms)


def graph_fields(g) -> dict:
    """One crystal's graph as the tensors it was built from (for the stack-neutral graph cache)."""
    return {"src": g.edge_index[0], "node_type": g.node_type, "rank": g.rank, "pbc_offset": g.pbc_offset,
            "frac_coords": g.frac_coords}
