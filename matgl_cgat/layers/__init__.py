"""Neural-network blocks of CGAT: embeddings, attention message passing, hypernetwork, Roost, readout."""

from __future__ import annotations

from ._edge_mlp import edge_mlp
from ._embedding import ElementEmbedding, matscholar_table
from ._fidelity import FidelityFiLM, condition_on_fidelities
from ._hypernetwork import HyperLinear, HyperNetwork
from ._message_passing import CGATBlock, EdgePairMLP
from ._mlp import GroupedMLP, hidden_width
from ._novelty import RepresentationNovelty
from ._readout import AttentionReadout, ResidualHead
from ._roost import RoostContext, RoostMessage

__all__ = [
    "AttentionReadout",
    "CGATBlock",
    "EdgePairMLP",
    "ElementEmbedding",
    "FidelityFiLM",
    "GroupedMLP",
    "HyperLinear",
    "HyperNetwork",
    "RepresentationNovelty",
    "ResidualHead",
    "RoostContext",
    "RoostMessage",
    "condition_on_fidelities",
    "edge_mlp",
    "hidden_width",
    "matscholar_table",
]
