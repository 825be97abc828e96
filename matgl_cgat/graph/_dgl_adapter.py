"""DGL (MatGL 1.x): CGAT's DGL graphs as :class:`~matgl_cgat.graph.AtomGraphTensors`.

The only place the model's inputs meet DGL: the converter writes ``ndata["node_type"]`` and
``edata["rank"]`` with edges receiver by receiver; this reads them back out, checking the layout
the model's dense neighbourhood reshapes rely on.
"""

from __future__ import annotations

import torch

from ._tensors import AtomGraphTensors, check_receiver_order


def dgl_atom_graph_tensors(g) -> AtomGraphTensors:
    src, dst = g.edges()
    check_receiver_order(dst, g.num_nodes(), "DGL graph")
    return AtomGraphTensors(node_type=g.ndata["node_type"].long(), src=src.long(), rank=g.edata["rank"].long(),
                            num_atoms=g.batch_num_nodes().long())
