"""Crystals built from a space group, with the symmetry expansion done once per prototype.

``Structure.from_spacegroup`` expands the given sites by every operation of the group. For the
face-centred cubic groups (192 operations, Fm-3m, Fd-3m, F-43m) pymatgen 2026.10 takes about 0.5 s a
call, most of it building the group, on every call: the five demo crystals of ``mgl-cgat predict``
and the 25 textbook crystals paid it each time, and so did every test that varies a rock salt's
lattice constant (160 of them took 4 minutes). The fractional coordinates of the expanded sites
depend only on the group, the species and the given coordinates, never on the lattice constants, so
they are kept here and only the lattice is new on a repeated call.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=256)
def _expanded(group: str, species: tuple, coords: tuple, lattice: tuple) -> tuple[tuple, tuple]:
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup(group, Lattice.from_parameters(*lattice), list(species), [list(c) for c in coords])
    return tuple(str(site.specie) for site in s), tuple(tuple(float(x) for x in site.frac_coords) for site in s)


@lru_cache(maxsize=256)
def _prototype(group: str, species: tuple, coords: tuple, system: tuple) -> tuple[tuple, tuple]:
    """The expansion for the first lattice seen with these angles and axis ratios (the group's check of
    the lattice needs its shape; the expansion itself does not depend on the lengths)."""
    return _expanded(group, species, coords, system)


def symmetric_structure(group: str, lattice, species, coords):
    """``Structure.from_spacegroup(group, lattice, species, coords)``, faster on repeated prototypes.

    ``lattice``: a pymatgen ``Lattice`` or its six parameters (a, b, c, alpha, beta, gamma).
    """
    from pymatgen.core import Lattice, Structure

    lattice = lattice if isinstance(lattice, Lattice) else Lattice.from_parameters(*lattice)
    a, b, c = lattice.abc
    shape = (1.0, round(b / a, 9), round(c / a, 9), *(round(x, 9) for x in lattice.angles))
    key = (group, tuple(str(s) for s in species), tuple(tuple(float(x) for x in c_) for c_ in coords))
    names, frac = _prototype(*key, shape)
    return Structure(lattice, list(names), [list(f) for f in frac])
