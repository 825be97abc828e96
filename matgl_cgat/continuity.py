"""The strain check: would a 1% strain change the model's answer? (issue #36, item 2)

Why it exists: CGAT's edge input is the rank of a neighbour's shell, and a new shell starts wherever
two sorted neighbour distances differ by more than the converter's tolerance (0.01 A). A strain far
below DFT's own geometry error can open or close such a gap, every later neighbour then changes rank,
and the answer jumps (``docs/results.md`` 12.2: up to 6 eV for a gap). A crystal "near a shell
boundary" is therefore best recognised by what matters to the user: whether the answer moves.

How: each crystal is strained by 1% in a few ways (:data:`STRAIN_PROBES`), the graph of each strained
copy is built, and only the copies whose network input differs from the crystal's own (other
neighbours or other ranks) are run through the network; a copy with the same input has the same
answer. (Uniaxial strains change nearly every crystal's input, so the check costs 8-9x a plain
prediction: ``docs/results.md`` 12.2.) The largest change of the answer
over the probes is the crystal's *strain spread*. It is added to sigma in quadrature (the answer is
uncertain by at least that much, whatever the uncertainty head thinks), and the crystal is flagged
where it exceeds the model's own test MAE, the issue's bar for a 1% strain. A Δ-model's spread is that
of its own output, the residual: the potential beneath it moves smoothly with the geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: The strained copies probed: each lattice vector stretched and compressed by 1%. Uniaxial strains
#: split neighbour distances that symmetry kept equal, which is how answers jump; an isotropic 1% strain
#: never moved a formation energy by more than the model's MAE on 300 test crystals (``docs/results.md``
#: 12.2), so it is not probed.
STRAIN_PROBES: tuple[str, ...] = ("a+1", "a-1", "b+1", "b-1", "c+1", "c-1")


def strained(structure, probe: str):
    """A copy of a pymatgen ``Structure`` under one of :data:`STRAIN_PROBES`, or ``"iso+1"``/``"iso-1"``
    (the cell scaled by 1.01 / 0.99), fractional coordinates kept."""
    from pymatgen.core import Lattice, Structure

    if probe not in STRAIN_PROBES and probe not in ("iso+1", "iso-1"):
        raise ValueError(f"unknown strain probe {probe!r}; one of {STRAIN_PROBES}")
    factor = 1.01 if probe.endswith("+1") else 0.99
    matrix = structure.lattice.matrix.copy()
    if probe.startswith("iso"):
        matrix *= factor
    else:
        matrix["abc".index(probe[0])] *= factor
    return Structure(Lattice(matrix), structure.species, structure.frac_coords)


def same_network_input(g, h) -> bool:
    """Whether two graphs of the same crystal give a CGAT network the same input: each atom has the same
    neighbours in the same shells. The order of an atom's neighbours does not matter (attention sums
    over them), and near-equal distances are ordered differently under a strain that changes nothing."""
    return all(np.array_equal(x, y) for x, y in zip(_neighbourhoods(g), _neighbourhoods(h)))


def _neighbourhoods(g) -> tuple[np.ndarray, np.ndarray]:
    """(atoms, k) senders and ranks of every atom's neighbours, sorted by rank then sender."""
    from matgl_cgat.graph import atom_graph_tensors

    t = atom_graph_tensors(g)
    n = t.node_type.shape[0]
    src = t.src.reshape(n, -1).cpu().numpy()  # predict_structure's own graph may sit on a GPU
    rank = t.rank.float().reshape(n, -1).cpu().numpy()
    order = np.lexsort((src, rank), axis=-1)
    return np.take_along_axis(src, order, -1), np.take_along_axis(rank, order, -1)


@dataclass
class StrainedGraphs:
    """The strained copies of a batch whose network input differs from their crystal's.

    Attributes:
        graphs: the copies' graphs, batched (None where no copy differs: every answer stands).
        owner: (M,) index, in the batch, of the crystal each copy was made from.
    """

    graphs: object | None
    owner: np.ndarray


def strained_graphs(converter, structures: list, graphs: list) -> StrainedGraphs:
    """Build every probe's copy of each crystal and keep the copies the network would see differently.

    ``structures`` are checked pymatgen structures and ``graphs`` their own graphs from ``converter``.
    A copy the converter refuses (a strain cannot make a crystal impossible unless it nearly was) is
    left out: it has no answer to compare."""
    from matgl_cgat.graph import batch_graphs

    kept, owner = [], []
    for i, (structure, own) in enumerate(zip(structures, graphs)):
        for probe in STRAIN_PROBES:
            try:
                g = converter.get_graph(strained(structure, probe))[0]
            except ValueError:
                continue
            if not same_network_input(own, g):
                kept.append(g)
                owner.append(i)
    return StrainedGraphs(batch_graphs(kept) if kept else None, np.asarray(owner, dtype=np.int64))


def strain_spread(values: torch.Tensor, strained_values: torch.Tensor | None, owner: np.ndarray) -> torch.Tensor:
    """(N, C): per crystal and output, the largest absolute change of its answer over its strained copies
    (0 where no copy changes the network's input). ``values``: (N, C) answers of the crystals;
    ``strained_values``: (M, C) answers of the copies, whose crystals ``owner`` gives."""
    spread = torch.zeros_like(values)
    if strained_values is None or len(owner) == 0:
        return spread
    index = torch.as_tensor(owner, device=values.device).unsqueeze(1).expand(-1, values.shape[1])
    change = (strained_values.to(values.dtype) - values[index[:, 0]]).abs()
    return spread.scatter_reduce(0, index, change, reduce="amax", include_self=True)


def widened_sigma(sigma: float, spread: float) -> float:
    """Sigma with the strain spread added in quadrature."""
    return math.hypot(sigma, spread)


def own_mae(model, fidelity: str | None = None) -> float | None:
    """The model's test MAE from its card (the issue's bar for a 1% strain); for a multi-fidelity model,
    ``fidelity``'s (a table column, :class:`matgl_cgat.predict.FidelityView`, knows its own); None for a
    model saved without one (then nothing is flagged; sigma still widens)."""
    card = getattr(model, "metadata", None)
    mae = card.get("test_mae") if isinstance(card, dict) else None
    if isinstance(mae, dict):
        fidelity = fidelity or getattr(model, "fidelity", None)
        entry = mae.get(fidelity) if fidelity is not None else None
        mae = entry.get("mae") if isinstance(entry, dict) else None
    return float(mae) if isinstance(mae, (int, float)) and math.isfinite(mae) and mae > 0 else None
