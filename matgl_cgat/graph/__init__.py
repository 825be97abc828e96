"""Graph building for CGAT: the shell-rank neighbour converter and the Roost composition graph."""

from __future__ import annotations

from ._composition import CompositionGraph, composition_graph
from ._converter import DEFAULT_TOLERANCE, CGATGraphConverter, NeighborShells, nearest_neighbor_shells
from ._elements import ELEMENTS, atomic_numbers_of

__all__ = [
    "DEFAULT_TOLERANCE",
    "ELEMENTS",
    "CGATGraphConverter",
    "CompositionGraph",
    "NeighborShells",
    "atomic_numbers_of",
    "composition_graph",
    "nearest_neighbor_shells",
]
