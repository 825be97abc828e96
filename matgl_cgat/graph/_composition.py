"""The reduced-composition element graph that feeds CGAT's Roost context (Goodall & Lee 2020).

The fractional composition of a cell equals its reduced composition, so the element graph is derived
from the atom graph's ``node_type`` inside the model: one node per distinct element of each crystal,
weighted by its atomic fraction, fully connected within the crystal (no self-loops, as in Roost).
A unary crystal has one element node and no edges; the Roost layers handle that (the reference crashed).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class CompositionGraph(NamedTuple):
    """Element nodes of a batch of crystals, in crystal order (contiguous per crystal)."""

    src: torch.Tensor  # (P,) int64: fully connected per crystal, pairs src -> dst, grouped by dst
    dst: torch.Tensor  # (P,) int64
    element_type: torch.Tensor  # (M,) index into ELEMENTS
    fraction: torch.Tensor  # (M,) atomic fraction of the element in its crystal
    num_elements: torch.Tensor  # (B,) element nodes per crystal


def composition_graph(node_type: torch.Tensor, batch_num_nodes: torch.Tensor, num_types: int) -> CompositionGraph:
    """Build the batched element graph from atom types (vectorised; no Python loop over crystals)."""
    device = node_type.device
    batch_num_nodes = batch_num_nodes.to(device=device, dtype=torch.long)
    num_crystals = len(batch_num_nodes)
    crystal = torch.repeat_interleave(torch.arange(num_crystals, device=device), batch_num_nodes)
    keys, counts = torch.unique(crystal * num_types + node_type.long(), return_counts=True)
    elem_crystal = torch.div(keys, num_types, rounding_mode="floor")
    element_type = keys - elem_crystal * num_types
    fraction = counts.to(torch.float32) / batch_num_nodes[elem_crystal].to(torch.float32)
    num_elements = torch.bincount(elem_crystal, minlength=num_crystals)

    # All ordered pairs (a, b) of element nodes within each crystal, a != b.
    elem_start = torch.cumsum(num_elements, 0) - num_elements
    pairs_per = num_elements * num_elements
    pair_crystal = torch.repeat_interleave(torch.arange(num_crystals, device=device), pairs_per)
    pair_start = torch.cumsum(pairs_per, 0) - pairs_per
    offset = torch.arange(int(pairs_per.sum()), device=device) - pair_start[pair_crystal]
    n_of = num_elements[pair_crystal]
    a = torch.div(offset, n_of, rounding_mode="floor")
    b = offset - a * n_of
    keep = a != b
    src = (elem_start[pair_crystal] + b)[keep]
    dst = (elem_start[pair_crystal] + a)[keep]
    return CompositionGraph(src, dst, element_type, fraction, num_elements)
