"""Stability from formation energies: the distance to a convex hull built with pymatgen's ``PhaseDiagram``.

The second of two ways to screen for stable crystals. The first is a model trained on hull
distances directly (``CGAT-PBE-Ehull``). The second predicts the formation energy and places it
against a hull built from known compounds (the training set's DFT formation energies; elements at
0 eV/atom): ``e_hull = e_form - hull energy of that composition``. The second way uses every
compound of the reference set explicitly, so the hull is exact where the reference is complete; but
a formation-energy error of 0.1 eV/atom is a hull-distance error of 0.1 eV/atom, while hull
distances themselves are mostly below 0.1. Which is better is measured in ``docs/results.md``
(``benchmarks/stability_two_ways.py``).

Hulls are built per chemical system, from the reference compounds whose elements are a subset of the
query's (all a hull needs), and cached: thousands of queries in hundreds of systems take seconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np


class ReferenceHull:
    """Known compounds (composition, formation energy per atom) to measure hull distances against."""

    def __init__(self, compositions: Iterable, e_form_per_atom: Iterable[float]):
        """
        Args:
            compositions: pymatgen ``Composition`` objects (or anything ``Composition()`` accepts).
            e_form_per_atom: their formation energies, eV/atom, relative to the elements at 0.
        """
        from pymatgen.analysis.phase_diagram import PDEntry
        from pymatgen.core import Composition

        self._by_system: dict[frozenset, list] = defaultdict(list)
        n = 0
        for comp, e in zip(compositions, e_form_per_atom, strict=True):
            comp = Composition(comp)
            if not np.isfinite(e):
                raise ValueError(f"reference {comp.reduced_formula}: formation energy {e} is not finite")
            self._by_system[frozenset(el.symbol for el in comp.elements)].append(
                PDEntry(comp, float(e) * comp.num_atoms))
            n += 1
        if n == 0:
            raise ValueError("a reference hull needs at least one compound")
        self.size = n
        self._diagrams: dict[frozenset, object] = {}

    def diagram(self, elements: Iterable[str]):
        """pymatgen ``PhaseDiagram`` of a chemical system: its reference compounds plus the elements at 0."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        system = frozenset(elements)
        if system not in self._diagrams:
            entries = [PDEntry(Composition(el), 0.0) for el in sorted(system)]
            for sub, known in self._by_system.items():
                if sub <= system:
                    entries.extend(known)
            self._diagrams[system] = PhaseDiagram(entries)
        return self._diagrams[system]

    def e_above_hull(self, composition, e_form_per_atom: float) -> float:
        """Formation energy minus the hull energy at this composition, eV/atom (negative: below the hull)."""
        from pymatgen.core import Composition

        comp = Composition(composition)
        pd = self.diagram(el.symbol for el in comp.elements)
        return float(e_form_per_atom) - float(pd.get_hull_energy_per_atom(comp))

    def distances(self, compositions: Sequence, e_form_per_atom: Sequence[float], allow_negative: bool = False) -> np.ndarray:
        """Hull distances of many compounds; below-hull values are clipped to 0 unless ``allow_negative``
        (a compound below the reference hull would be on the hull once added to it)."""
        out = np.array([self.e_above_hull(c, e) for c, e in zip(compositions, e_form_per_atom, strict=True)],
                       dtype=float)
        return out if allow_negative else np.maximum(out, 0.0)
