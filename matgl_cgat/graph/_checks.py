"""What a crystal must be before CGAT may build its graph: finite, periodic, with atoms apart.

CGAT's edges carry neighbour *ranks*, not distances (see :mod:`matgl_cgat.graph._converter`): a
uniformly scaled crystal has the same graph, hence the same prediction, as the real one. That is the
paper's design (predictions are insensitive to the small lattice errors of prototype structures),
but it means the network cannot notice an impossible geometry by itself. So the converter refuses
what no crystal can be, and :mod:`matgl_cgat.domain` flags what is possible but far from training:

- coordinates or lattice vectors that are not finite numbers, a cell with no volume, no sites;
- an ASE ``Atoms`` without a cell (a molecule): CGAT's neighbour shells need a 3D periodic cell;
- two sites (or a site and its own periodic image) closer than :data:`IMPOSSIBLE_FRACTION` of their
  covalent bond length (sum of covalent radii): atoms on top of each other, or a cell scaled down
  to a few cubic angstroms. In 6,000 random crystals of the shared Materials Project data the
  shortest contact is 0.65 of the covalent bond length (``benchmarks/contact_distances.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._elements import atomic_numbers_of

#: Contacts shorter than this fraction of the covalent bond length are refused as impossible.
IMPOSSIBLE_FRACTION = 0.5
#: Contacts shorter than this fraction are flagged as unusual (none in 6,000 Materials Project crystals).
SHORT_FRACTION = 0.6
_FALLBACK_RADIUS = 1.5  # A; the heavy actinides pymatgen's table lacks


class ImpossibleStructure(ValueError):
    """A structure no crystal can have (the message says what and where)."""


@dataclass(frozen=True)
class Contact:
    """The shortest contact of a structure relative to the covalent bond length of its two atoms."""

    i: int
    j: int
    distance: float  # A
    bond: float  # sum of covalent radii, A
    same_site: bool  # j is a periodic image of i

    @property
    def fraction(self) -> float:
        return self.distance / self.bond

    def describe(self, structure) -> str:
        a, b = structure[self.i].specie, structure[self.j].specie
        who = f"site {self.i} ({a}) and its own periodic image" if self.same_site else (
            f"sites {self.i} ({a}) and {self.j} ({b})")
        return f"{who} are {self.distance:.2f} A apart ({self.fraction:.2f} of their covalent bond length {self.bond:.2f} A)"


def covalent_radius(symbol: str) -> float:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    return float(CovalentRadius.radius.get(symbol, _FALLBACK_RADIUS))


def shortest_contact(structure, shells) -> Contact:
    """The edge of ``shells`` (:func:`nearest_neighbor_shells` of ``structure``) with the smallest
    distance / covalent bond length. The nearest neighbours hold it: no extra neighbour search."""
    radii = np.array([covalent_radius(site.specie.symbol) for site in structure])
    bonds = radii[shells.src] + radii[shells.dst]
    k = int(np.argmin(shells.distances / bonds))
    src, dst = int(shells.src[k]), int(shells.dst[k])
    return Contact(dst, src, float(shells.distances[k]), float(bonds[k]), src == dst)


def check_contacts(structure, shells) -> Contact:
    """The shortest contact, or :class:`ImpossibleStructure` if it is below :data:`IMPOSSIBLE_FRACTION`."""
    contact = shortest_contact(structure, shells)
    if contact.fraction < IMPOSSIBLE_FRACTION:
        raise ImpossibleStructure(
            f"{structure.formula}: {contact.describe(structure)}; below {IMPOSSIBLE_FRACTION} of it no crystal "
            "exists (atoms on top of each other, or a wrongly scaled cell?)")
    return contact


def as_checked_structure(obj):
    """A pymatgen ``Structure`` for ``obj`` (Structure or ASE ``Atoms``), or an error saying what is wrong.

    Contacts are checked after the neighbour search (:func:`check_contacts`), which finds them anyway.

    Raises:
        TypeError: ``obj`` is neither.
        ImpossibleStructure: see the module docstring.
    """
    from pymatgen.core import Structure

    if not isinstance(obj, Structure):
        try:
            from ase import Atoms
        except ImportError:  # pragma: no cover - ase is a pymatgen/matgl dependency
            Atoms = ()
        if not isinstance(obj, Atoms):
            raise TypeError(f"expected a pymatgen Structure or ASE Atoms, got {type(obj).__name__}")
        cell = np.asarray(obj.cell, dtype=float)
        if not np.all(np.isfinite(cell)) or abs(np.linalg.det(cell)) < 1e-6:
            raise ImpossibleStructure(
                f"ASE Atoms {obj.get_chemical_formula()} has no 3D cell (a molecule or slab without a "
                "lattice?): CGAT needs a periodic crystal")
        if not np.all(np.isfinite(obj.positions)):
            raise ImpossibleStructure(f"ASE Atoms {obj.get_chemical_formula()} has non-finite positions")
        from pymatgen.io.ase import AseAtomsAdaptor

        obj = AseAtomsAdaptor.get_structure(obj)
    if len(obj) == 0:
        raise ImpossibleStructure("the structure has no sites")
    matrix = obj.lattice.matrix
    if not np.all(np.isfinite(matrix)):
        raise ImpossibleStructure(f"{obj.formula}: lattice vectors are not finite numbers: {matrix.tolist()}")
    if not np.all(np.isfinite(obj.frac_coords)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(obj.frac_coords), axis=1))[0])
        raise ImpossibleStructure(f"{obj.formula}: site {bad} ({obj[bad].specie}) has non-finite coordinates")
    if not abs(obj.volume) > 1e-6:
        raise ImpossibleStructure(f"{obj.formula}: the cell has no volume ({obj.volume:.3g} A^3)")
    atomic_numbers_of(obj)  # disordered or unembeddable: a clear ValueError before anything reads site.specie
    return obj
