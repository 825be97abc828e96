"""The element vocabulary of CGAT: the 103 elements (H..Lr) that have Matscholar embeddings."""

from __future__ import annotations

import numpy as np
from pymatgen.core.periodic_table import Element

#: Element symbols ordered by atomic number; ``node_type`` of a site is ``Z - 1``.
ELEMENTS: tuple[str, ...] = tuple(Element.from_Z(z).symbol for z in range(1, 104))


def atomic_numbers_of(structure) -> np.ndarray:
    """Atomic numbers of an ordered structure, with a clear error for what CGAT cannot embed."""
    if not structure.is_ordered:
        raise ValueError(
            f"structure {structure.composition.formula!r} is disordered (partial occupancies); "
            "CGAT needs an ordered structure: order it first (e.g. pymatgen's OrderDisorderedStructureTransformation)"
        )
    z = np.array([getattr(site.specie, "Z", 0) for site in structure], dtype=np.int64)
    bad = sorted({structure[i].specie.symbol for i in np.flatnonzero((z < 1) | (z > len(ELEMENTS)))})
    if bad:
        raise ValueError(
            f"structure {structure.composition.formula!r} contains element(s) {', '.join(bad)} that CGAT cannot "
            f"embed: Matscholar vectors exist only for H..Lr (Z 1-{len(ELEMENTS)})"
        )
    return z
