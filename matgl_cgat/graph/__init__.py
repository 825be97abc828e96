"""Graph building for CGAT: the shell-rank neighbour converter and the Roost composition graph."""

from __future__ import annotations

from ._checks import IMPOSSIBLE_FRACTION, SHORT_FRACTION, Contact, ImpossibleStructure, as_checked_structure, covalent_radius, shortest_contact
from ._composition import CompositionGraph, composition_graph
from ._converter import DEFAULT_TOLERANCE, CGATGraphConverter, NeighborShells, nearest_neighbor_shells
from ._elements import ELEMENTS, atomic_numbers_of
from ._backend import graph_library, stack_description
from ._tensors import AtomGraphTensors, atom_graph_tensors, batch_graphs, check_receiver_order, graph_fields, make_graph

__all__ = [
    "AtomGraphTensors",
    "atom_graph_tensors",
    "batch_graphs",
    "check_receiver_order",
    "graph_fields",
    "graph_library",
    "make_graph",
    "stack_description",
    "DEFAULT_TOLERANCE",
    "ELEMENTS",
    "IMPOSSIBLE_FRACTION",
    "SHORT_FRACTION",
    "Contact",
    "ImpossibleStructure",
    "as_checked_structure",
    "covalent_radius",
    "shortest_contact",
    "CGATGraphConverter",
    "CompositionGraph",
    "NeighborShells",
    "atomic_numbers_of",
    "composition_graph",
    "nearest_neighbor_shells",
]
