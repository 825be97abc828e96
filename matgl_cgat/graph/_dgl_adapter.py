"""DGL (MatGL 1.x): CGAT's DGL graphs as :class:`~matgl_cgat.graph.AtomGraphTensors`.

The only place the model's inputs meet DGL: the converter writes ``ndata["node_type"]`` and
``edata["rank"]`` with edges receiver by receiver; this reads them back out, checking the layout
the model's dense neighbourhood reshapes rely on.
"""

from __future__ import annotations

import torch

from ._tensors import AtomGraphTensors, check_receiver_order, rank_tensor


def graph(src, dst, node_type, rank, pbc_offset, frac_coords):
    """One crystal's DGL graph (int32 indices, as MatGL 1.x's converters make them)."""
    import dgl

    g = dgl.graph((src, dst), num_nodes=int(node_type.shape[0]), idtype=torch.int32)
    g.edata["pbc_offset"] = pbc_offset
    g.edata["rank"] = rank.float() if rank.is_floating_point() else rank.to(torch.int32)
    g.ndata["node_type"] = node_type.to(torch.int32)
    g.ndata["frac_coords"] = frac_coords
    return g


def batch(graphs: list):
    import dgl

    return dgl.batch(graphs)


def atom_graph_tensors(g) -> AtomGraphTensors:
    src, dst = g.edges()
    check_receiver_order(dst, g.num_nodes(), "DGL graph")
    return AtomGraphTensors(node_type=g.ndata["node_type"].long(), src=src.long(), rank=rank_tensor(g.edata["rank"]),
                            num_atoms=g.batch_num_nodes().long())


def graph_fields(g) -> dict:
    """One crystal's graph as the tensors it was built from (for the stack-neutral graph cache)."""
    src, _ = g.edges()
    return {"src": src, "node_type": g.ndata["node_type"], "rank": g.edata["rank"],
            "pbc_offset": g.edata["pbc_offset"], "frac_coords": g.ndata["frac_coords"]}
