"""Elemental reference energies computed by the potential itself.

A formation enthalpy is the total energy minus each element's chemical potential, and both must
come from the same potential: mixing a potential's compound energies with DFT's elemental energies
would add that potential's systematic error per element to every answer. For each element the
reference is the lowest energy per atom the potential gives among the element's *known* ground-state
candidates, each relaxed by it (ASE optimiser, cell filter, symmetry kept with ASE's ``FixSymmetry``
so that a candidate stays the phase it is):

- the lowest elemental crystals of a data file by its own hull distance (the shared
  ``mp_gap.jsonl.gz``: ``per_element`` of them, ``e_hull_pbe`` first), and
- the standard state ASE tabulates for the element (``ase.data.reference_states``: fcc, bcc, hcp,
  diamond, ... with its lattice constant), a dimer in a 12 Å box where the standard state is a
  diatomic molecule (relaxed without the box), graphite for carbon and trigonal chains for S, Se and
  Te, because the data file lacks the ground state of several elements (N2, graphite, hcp Be/Zr/Lu,
  sulfur and selenium altogether, ...);
- only where neither gives any candidate (plutonium), fcc and bcc cells sized by the element's radius.

Why not every lattice one can build: a potential can have deep spurious minima far from its
training data. Measured with M3GNet-MatPES-r2SCAN (MatGL 1.3): simple-cubic Si relaxes, even with its
symmetry kept, to -8.300 eV/atom, 0.20 eV/atom *below* diamond Si (-8.099), where DFT puts it about
0.3 eV/atom above. Taking that minimum would shift every silicon compound's formation enthalpy by up
to 0.2 eV/atom. Results are cached per potential identity and settings, one element at a time.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ._cache import ReferenceCache, default_cache_dir
from ._energy import EnergySource
from ._errors import PotentialError
from ._relax import RelaxOptions, relax_atoms

#: Elements whose standard state is a diatomic molecule.
DIATOMIC = ("H", "N", "O", "F", "Cl", "Br", "I")
#: Trigonal helical-chain crystals (a, c in Å, u): Se and Te as measured; S (whose ground state, the
#: 128-atom S8 crystal, is in neither the shared data nor ASE's table) as fibrous sulfur's chains,
#: Se's cell scaled by the ratio of covalent radii.
CHAIN_CRYSTALS = {"Se": (4.366, 4.954, 0.2254), "Te": (4.457, 5.929, 0.2636), "S": (3.82, 4.33, 0.2254)}


@dataclass(frozen=True)
class Candidate:
    """An elemental crystal to try: its element, where it came from, and the pymatgen structure."""

    element: str
    origin: str  # "mp-12 (mp_gap.jsonl.gz)" or "fcc (hand-built)"
    structure: object
    molecule: bool = False


@dataclass
class ElementalReferences:
    """Energy per atom of each element's lowest-energy crystal, as the potential sees it.

    Attributes:
        identity: the potential's identity (see :class:`EnergySource`).
        energies: element -> eV/atom.
        origins: element -> which candidate won (``"mp-149 (mp_gap.jsonl.gz)"``, ``"N2 (hand-built)"``).
    """

    identity: str
    energies: dict[str, float] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # element -> why it has no reference

    def formation_enthalpy(self, structure, total_energy: float) -> float:
        """(E_total - sum of n_el * mu_el) / N, eV/atom; a missing element is a ``KeyError`` naming it."""
        composition = structure.composition
        missing = sorted(el.symbol for el in composition.elements if el.symbol not in self.energies)
        if missing:
            raise KeyError(f"no elemental reference for {', '.join(missing)}")
        reference = sum(amount * self.energies[el.symbol] for el, amount in composition.items())
        return (total_energy - reference) / composition.num_atoms


#: Raised whenever :func:`hand_built_candidates` or :func:`data_file_candidates` change which crystals they
#: offer, so that references cached from the old candidate set are not reused.
CANDIDATES_VERSION = 2


def _file_digest(path: str | Path) -> str:
    """A digest of a data file's bytes: cached references follow its content, not only its name."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def data_file_candidates(path: str | Path, elements: Iterable[str], per_element: int = 2,
                         max_sites: int = 64, hull_key: str = "e_hull_pbe") -> list[Candidate]:
    """Elemental crystals of a JSON-lines file in ``mp_gap.jsonl.gz``'s layout, up to ``per_element``
    per element, lowest ``hull_key`` first (then fewest sites; a record without it ranks last). Cells
    above ``max_sites`` are left out to keep relaxations cheap, unless an element has no other: then its
    smallest one is kept (sulfur's crystals in ``mp_gap`` all have 128 sites or more, and ASE
    tabulates no standard state for it)."""
    from pymatgen.core import Structure

    wanted = set(elements)
    found: dict[str, list[tuple[float, int, str, dict]]] = {}
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            sites = record["structure"]["sites"]
            species = {sp["element"] for site in sites for sp in site["species"]}
            if len(species) == 1 and (el := species.pop()) in wanted:
                hull = record.get(hull_key)
                hull = float(hull) if isinstance(hull, (int, float)) else float("inf")
                found.setdefault(el, []).append((hull, len(sites), str(record.get("mat_id", "?")), record["structure"]))
    out = []
    for el, rows in found.items():
        small = [r for r in rows if r[1] <= max_sites] or [min(rows, key=lambda r: (r[1], r[0], r[2]))]
        for _, _, rid, struct in sorted(small, key=lambda r: (r[0], r[1], r[2]))[:per_element]:
            out.append(Candidate(el, f"{rid} ({path.name})", Structure.from_dict(struct)))
    return out


def close_packed_candidates(element: str) -> list[Candidate]:
    """fcc and bcc cells of ``element`` at the lattice constant its metallic (else atomic) radius gives:
    the last resort for an element with no other candidate (plutonium: no elemental crystal in mp_gap,
    and ASE tabulates a monoclinic standard state it cannot build). Relaxed with the cell, the lower is
    kept; for Pu that is close to delta-Pu (fcc), the phase a DFT reference of Pu usually is."""
    import warnings

    from pymatgen.core import Element, Lattice

    from matgl_cgat._crystals import symmetric_structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for elements without a metallic radius
        radius = Element(element).metallic_radius or Element(element).atomic_radius
    if not radius:
        return []
    r = float(radius)
    return [Candidate(element, "fcc (hand-built, close-packed fallback)",
                      symmetric_structure("Fm-3m", Lattice.cubic(2 * 2**0.5 * r), [element], [[0, 0, 0]])),
            Candidate(element, "bcc (hand-built, close-packed fallback)",
                      symmetric_structure("Im-3m", Lattice.cubic(4 * r / 3**0.5), [element], [[0, 0, 0]]))]


def hand_built_candidates(element: str) -> list[Candidate]:
    """The element's tabulated standard state (``ase.data.reference_states`` through ``ase.build.bulk``),
    a dimer in a 12 Å box for diatomic elements, and graphite for carbon."""
    from ase.build import bulk
    from ase.data import atomic_numbers, covalent_radii, reference_states
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from matgl_cgat._crystals import symmetric_structure

    z = atomic_numbers[element]
    state = reference_states[z] or {}
    out = []
    if element in DIATOMIC:
        d = float(state.get("d", 2.0 * covalent_radii[z]))
        out.append(Candidate(element, f"{element}2 (hand-built)",
                             Structure(Lattice.cubic(12.0), [element, element], [[0, 0, 0], [0, 0, d / 12.0]]),
                             molecule=True))
    if element == "C":
        out.append(Candidate("C", "graphite (hand-built)",
                             Structure(Lattice.hexagonal(2.46, 6.70), ["C"] * 4,
                                       [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])))
    if element in CHAIN_CRYSTALS:  # trigonal helical chains (A8, P3_121): ASE cannot build them
        a, c, u = CHAIN_CRYSTALS[element]
        out.append(Candidate(element, "trigonal chains (hand-built)",
                             symmetric_structure("P3_121", Lattice.hexagonal(a, c), [element], [[u, 0, 1 / 3]])))
    symmetry = state.get("symmetry")
    if symmetry and symmetry not in ("diatom", "atom"):
        try:
            atoms = bulk(element)
        except (ValueError, KeyError, RuntimeError, NotImplementedError):  # a structure type bulk cannot build
            atoms = None
        if atoms is not None:
            out.append(Candidate(element, f"{symmetry} (hand-built, ASE standard state)",
                                 AseAtomsAdaptor.get_structure(atoms)))
    return out


def elemental_references(
    source: EnergySource,
    elements: Iterable[str],
    *,
    data_file: str | Path | None = None,
    relax: RelaxOptions = RelaxOptions(keep_symmetry=True),
    cache_dir: str | Path | None = None,
    on_error: str = "raise",
    progress: bool = True,
) -> ElementalReferences:
    """The potential's own elemental references for ``elements`` (see the module docstring).

    Args:
        source: the potential.
        elements: element symbols needed.
        data_file: a JSON-lines file of structures whose elemental crystals are candidates too (for
            example ``mp_gap.jsonl.gz``); None uses hand-built candidates alone.
        relax: relaxation settings for the candidates (molecules relax without their box).
        cache_dir: where results are kept (default :func:`default_cache_dir`).
        on_error: ``"raise"`` (default): an element without a reference raises; ``"skip"``: it is left
            out and listed with why in ``missing`` (every structure holding it then has no value).
        progress: show a progress bar.

    Raises:
        PotentialError: an element outside the potential's table, or one for which no candidate relaxed
            (a candidate-less element: not in the data file and no standard state tabulated by ASE).
    """
    from pymatgen.io.ase import AseAtomsAdaptor
    from tqdm.auto import tqdm

    elements = sorted(set(elements))
    missing: dict[str, str] = {}

    def fail(el: str, why: str) -> None:
        if on_error == "raise":
            raise PotentialError(why)
        missing[el] = why

    if source.elements is not None:
        for el in [el for el in elements if el not in source.elements]:
            fail(el, f"no elemental reference possible for {el}: outside {source.name}'s table")
        elements = [el for el in elements if el not in missing]
    data_key = f"data={Path(data_file).name}@{_file_digest(data_file)}" if data_file else "data=none"
    cache = ReferenceCache(cache_dir or default_cache_dir(), source.identity,
                           f"{relax.key()};{data_key};candidates={CANDIDATES_VERSION}")
    todo = [el for el in elements if el not in cache.entries]
    uncached: dict[str, dict] = {}
    from_file = data_file_candidates(data_file, todo) if (todo and data_file) else []
    calculator = source.calculator() if todo else None
    for el in tqdm(todo, desc=f"elemental references ({source.name})", disable=not progress or not todo):
        candidates = [c for c in from_file if c.element == el] + hand_built_candidates(el)
        candidates = candidates or close_packed_candidates(el)  # never beside a known ground state
        results, failures, transient = [], [], False
        for c in candidates:
            options = replace(relax, relax_cell=relax.relax_cell and not c.molecule)
            name = f"{el} candidate {c.origin}"
            try:
                source.check_elements(c.structure, name)
                relaxed = relax_atoms(AseAtomsAdaptor.get_atoms(c.structure), calculator, options, name)
            except PotentialError as exc:
                failures.append(str(exc))
                transient = transient or exc.transient
                continue
            results.append((relaxed.energy / len(c.structure), c.origin))
        if not results:
            fail(el, f"{el}: no elemental reference from {source.name}: " + ("; ".join(failures) or (
                "no candidate crystal (none in the data file, ASE tabulates no standard state, and no radius "
                "to size a close-packed cell)")))
            continue
        energy, origin = min(results)
        entry = {"energy_per_atom": energy, "origin": origin, "relaxed": len(results), "failed": failures}
        if transient:  # a candidate failed for this run only (the model's code): the lowest may be missing,
            uncached[el] = entry  # so this reference is used now but computed again next time
            continue
        cache.entries[el] = entry
        cache.save()
    refs = ElementalReferences(source.identity, missing=missing)
    for el in elements:
        if el in missing:
            continue
        entry = uncached.get(el) or cache.entries[el]
        refs.energies[el] = float(entry["energy_per_atom"])
        refs.origins[el] = entry["origin"]
    return refs
