"""Applicability domain: is a crystal like the ones a model was trained on?

A graph network answers for any input, including crystals unlike anything it saw. Three cheap
signals catch most of those cases, and every prediction of this package can carry them as flags:

- **rare elements**: elements present in fewer than ``min_count`` (default :data:`MIN_COUNT`)
  training structures. The counts are stored with the model (``metadata["domain"]``), so the check
  needs no data at prediction time. An element the model never saw still gets its Matscholar
  embedding, so the network predicts something: the flag says not to trust it.
- **unusual geometry**: a contact shorter than :data:`~matgl_cgat.graph.SHORT_FRACTION` of the
  covalent bond length (shorter than any of 6,000 Materials Project crystals; below
  :data:`~matgl_cgat.graph.IMPOSSIBLE_FRACTION` the converter refuses the structure), or a volume per
  atom outside the training range. CGAT's edges are neighbour ranks, so a compressed or expanded
  copy of a crystal gets the real crystal's prediction: these flags are what notices the difference.
- **reduced periodicity**: an ASE ``Atoms`` periodic in fewer than 3 directions (a slab or a wire put
  in a box). CGAT treats the box as a 3D crystal.

A fourth signal needs the network: a model with a representation-domain check
(:mod:`matgl_cgat.novelty`) adds ``novelty`` to a crystal's flags when its pooled representation lies
far from those of the training crystals (diamond among carbon compounds), and widens its sigma.

Flags are advice, not errors: :meth:`CGAT.predict_structure` warns, ``mgl-cgat predict`` shows a
column, and CSV/JSON outputs carry them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from matgl_cgat.graph import ELEMENTS, SHORT_FRACTION, Contact, as_checked_structure, graph_fields, nearest_neighbor_shells
from matgl_cgat.graph._checks import check_contacts

#: Elements in fewer training structures than this are flagged.
MIN_COUNT = 10
#: An empty layer at least this thick (Angstrom, measured across the lattice planes) makes a direction
#: non-periodic for the flags: a slab or monolayer cut from a CIF or POSCAR, not a bulk crystal. A
#: layered bulk crystal stays below it (graphite's layers are 3.4 apart); of the 35,592 shared MP
#: structures 20 have such a layer (``benchmarks/vacuum_scan.py`` lists them).
VACUUM_GAP = 6.0


class DomainWarning(UserWarning):
    """A prediction for a crystal unlike the model's training data (see :class:`DomainFlags`)."""


def formula_of(obj) -> str:
    """Reduced formula of a pymatgen ``Structure`` or ASE ``Atoms`` (for messages)."""
    if hasattr(obj, "composition"):
        return obj.composition.reduced_formula
    return obj.get_chemical_formula(empirical=True) if hasattr(obj, "get_chemical_formula") else type(obj).__name__


@dataclass(frozen=True)
class TrainingDomain:
    """What a model was trained on, stored in its card as plain numbers (``metadata["domain"]``)."""

    n_structures: int
    element_counts: dict[str, int]  # element -> number of training structures containing it
    volume_per_atom: tuple[float, float]  # smallest and largest in training, A^3
    source: str = ""  # e.g. "mp_gap.jsonl.gz, splits.json['e_form_pbe'] train"

    @classmethod
    def from_graphs(cls, node_types: Iterable[np.ndarray], volumes_per_atom: Iterable[float],
                    source: str = "") -> TrainingDomain:
        """From per-structure arrays of 0-based element indices (CGAT graphs' ``node_type``) and volumes."""
        counts: Counter = Counter()
        n = 0
        for types in node_types:
            counts.update(ELEMENTS[int(t)] for t in np.unique(np.asarray(types)))
            n += 1
        v = np.asarray(list(volumes_per_atom), dtype=float)
        if n == 0 or len(v) != n:
            raise ValueError(f"need one volume per structure and at least one structure, got {n} and {len(v)}")
        return cls(n, dict(sorted(counts.items())), (float(v.min()), float(v.max())), source)

    @classmethod
    def from_dataset(cls, dataset, source: str = "") -> TrainingDomain:
        """From a dataset of MatGL ``(graph, lattice, ...)`` items built by :class:`CGATGraphConverter`."""
        types, volumes = [], []
        for i in range(len(dataset)):
            g, lattice = dataset[i][:2]
            node_type = graph_fields(g)["node_type"].numpy()
            types.append(node_type)
            volumes.append(abs(float(np.linalg.det(np.asarray(lattice, dtype=float).reshape(3, 3)))) / len(node_type))
        return cls.from_graphs(types, volumes, source)

    @classmethod
    def from_structures(cls, structures: Iterable, source: str = "") -> TrainingDomain:
        structures = [as_checked_structure(s) for s in structures]
        return cls.from_graphs(
            (np.array([site.specie.Z - 1 for site in s]) for s in structures),
            (s.volume / len(s) for s in structures), source)

    def to_dict(self) -> dict:
        return {"n_structures": self.n_structures, "element_counts": dict(self.element_counts),
                "volume_per_atom": list(self.volume_per_atom), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> TrainingDomain:
        lo, hi = d["volume_per_atom"]
        return cls(int(d["n_structures"]), {str(k): int(v) for k, v in d["element_counts"].items()},
                   (float(lo), float(hi)), str(d.get("source", "")))

    def merged(self, other: TrainingDomain) -> TrainingDomain:
        """The domain of both training sets together (counts added, volume ranges joined)."""
        counts = dict(self.element_counts)
        for e, n in other.element_counts.items():
            counts[e] = counts.get(e, 0) + n
        lo = min(self.volume_per_atom[0], other.volume_per_atom[0])
        hi = max(self.volume_per_atom[1], other.volume_per_atom[1])
        return TrainingDomain(self.n_structures + other.n_structures, dict(sorted(counts.items())), (lo, hi),
                              "; ".join(s for s in (self.source, other.source) if s))

    @classmethod
    def of_model(cls, model) -> TrainingDomain | None:
        """The domain stored in a model's card, or None for a model saved without one."""
        card = getattr(model, "metadata", None)
        d = card.get("domain") if isinstance(card, dict) else None
        return cls.from_dict(d) if d else None


@dataclass(frozen=True)
class DomainFlags:
    """Why a prediction may be unreliable; empty (falsy) when nothing is unusual."""

    rare_elements: dict[str, int] = field(default_factory=dict)  # element -> training count (< min_count)
    short_contact: str | None = None  # description of a contact below SHORT_FRACTION
    volume_per_atom: float | None = None  # set when outside the training range
    volume_range: tuple[float, float] | None = None
    periodic_directions: int = 3
    unknown_domain: bool = False  # the model has no stored training domain: elements/volume not checked
    novelty: float | None = None  # set when the representation lies beyond the model's novelty threshold
    novelty_threshold: float | None = None
    novelty_widen: float | None = None  # the factor its sigma was multiplied by
    companion_metal: tuple[str, float] | None = None  # (gap model, its metal probability) where a model of
    # non-metals only is asked about a crystal that its companion gap model calls a metal
    strain_spread: float | None = None  # set when a 1% strain moves the answer by more than the model's MAE
    strain_limit: float | None = None  # that MAE (:mod:`matgl_cgat.continuity`)

    def with_companion_metal(self, companion: str, probability: float) -> DomainFlags:
        """These flags plus the note that ``companion`` calls the crystal a metal (see
        :func:`matgl_cgat.predict.metal_companions`)."""
        return replace(self, companion_metal=(str(companion), float(probability)))

    def with_novelty(self, novelty: float, threshold: float, widen: float) -> DomainFlags:
        """These flags plus the representation check's (:mod:`matgl_cgat.novelty`), which needs the
        network's answer and so comes after the checks of the input; unchanged at or below the threshold."""
        if not novelty > threshold:
            return self
        return replace(self, novelty=float(novelty), novelty_threshold=float(threshold), novelty_widen=float(widen))

    def with_strain(self, spread: float, limit: float | None) -> DomainFlags:
        """These flags plus the strain check's (:mod:`matgl_cgat.continuity`): unchanged unless the
        largest change of the answer under a 1% strain exceeds ``limit`` (the model's own MAE)."""
        if limit is None or not spread > limit:
            return self
        return replace(self, strain_spread=float(spread), strain_limit=float(limit))

    def __bool__(self) -> bool:
        return bool(self.messages())

    def messages(self) -> list[str]:
        out = []
        if self.rare_elements:
            out.append("elements in few training structures: "
                       + ", ".join(f"{e} ({n})" for e, n in self.rare_elements.items()))
        if self.short_contact:
            out.append(f"unusually short contact: {self.short_contact}")
        if self.volume_per_atom is not None and self.volume_range is not None:
            lo, hi = self.volume_range
            out.append(f"volume {self.volume_per_atom:.1f} A^3/atom outside the training range {lo:.1f}-{hi:.1f}")
        if self.periodic_directions < 3:
            out.append(f"periodic in {self.periodic_directions} of 3 directions; CGAT treats the cell as a 3D crystal")
        if self.unknown_domain:
            out.append("the model stores no training domain: elements and volume not checked")
        if self.companion_metal is not None:
            by, p = self.companion_metal
            out.append(f"{by} calls it a metal (p {p:.2f}); this model answers for non-metals only")
        if self.novelty is not None:
            widened = f"; sigma widened x{self.novelty_widen:.2f}" if self.novelty_widen and self.novelty_widen > 1 else ""
            out.append(f"unlike the training crystals: representation distance {self.novelty:.1f}x a typical "
                       f"crystal's (flagged above {self.novelty_threshold:.1f}){widened}")
        if self.strain_spread is not None:
            out.append(f"near a neighbour-shell boundary: a 1% strain moves the answer by {self.strain_spread:.3g}, "
                       f"more than the model's MAE ({self.strain_limit:.3g}); sigma widened to include it")
        return out

    def short(self) -> str:
        """One compact cell for a table: ``Rn(0) V/atom 1.2 2D`` or ``-``."""
        parts = [f"{e}({n})" for e, n in self.rare_elements.items()]
        if self.short_contact:
            parts.append("short-contact")
        if self.volume_per_atom is not None:
            parts.append(f"V/atom={self.volume_per_atom:.1f}")
        if self.periodic_directions < 3:
            parts.append(f"{self.periodic_directions}D")
        if self.unknown_domain:
            parts.append("domain?")
        if self.novelty is not None:
            parts.append(f"novel={self.novelty:.1f}")
        if self.companion_metal is not None:
            parts.append(f"metal-by-{self.companion_metal[0]}")
        if self.strain_spread is not None:
            parts.append(f"strain={self.strain_spread:.2g}")
        return " ".join(parts) or "-"

    def to_dict(self) -> dict:
        return {"rare_elements": dict(self.rare_elements), "short_contact": self.short_contact,
                "volume_per_atom": self.volume_per_atom, "periodic_directions": self.periodic_directions,
                "novelty": self.novelty, "strain_spread": self.strain_spread,
                "companion_metal": list(self.companion_metal) if self.companion_metal else None, "messages": self.messages()}


@dataclass(frozen=True)
class Geometry:
    """What the flags need to know of one input, computed once however many models look at it."""

    structure: object  # the checked pymatgen Structure
    contact: Contact  # its shortest contact relative to covalent bond lengths
    periodic_directions: int  # 3, or fewer for an ASE Atoms with partial pbc or a cell with a vacuum layer


def inspect_structure(obj, checked=None, contact: Contact | None = None) -> Geometry:
    """Check a ``Structure`` or ASE ``Atoms`` as the converter does (raising the same errors for
    impossible ones) and measure what the domain flags use. ``checked`` and ``contact``: what
    :meth:`CGATGraphConverter.get_graph_and_contact` found already (the nearest contact is the same
    whatever the number of neighbours searched), so the search is not run twice."""
    pbc = getattr(obj, "pbc", None)
    if checked is not None and contact is not None:
        structure = checked
    else:
        structure = as_checked_structure(obj)
        shells = nearest_neighbor_shells(structure.cart_coords, structure.lattice.matrix, num_neighbors=12)
        contact = check_contacts(structure, shells)
    periodic = int(np.count_nonzero(pbc)) if pbc is not None else 3
    return Geometry(structure, contact, min(periodic, 3 - len(vacuum_directions(structure))))


def vacuum_directions(structure, gap: float = VACUUM_GAP) -> list[int]:
    """Lattice directions (0, 1, 2) across which the cell holds an empty layer at least ``gap`` thick.

    The same slab is a slab whether it arrives as ASE ``Atoms`` with ``pbc=(1, 1, 0)`` or as a CIF whose
    cell is padded with vacuum; only the geometry says so in the second case. For each direction the
    atoms' fractional coordinates are sorted on the circle and the widest empty stretch, times the
    spacing of the lattice planes, is the layer's thickness.
    """
    # the spacing of the lattice planes across direction i is 1 / |row i of the inverse lattice's transpose|
    spacings = 1.0 / np.linalg.norm(np.linalg.inv(structure.lattice.matrix).T, axis=1)
    x = np.sort(np.mod(structure.frac_coords, 1.0), axis=0)
    wrap = 1.0 - x[-1] + x[0]
    inner = np.max(np.diff(x, axis=0), axis=0, initial=0.0) if len(x) > 1 else np.zeros(3)
    widest = np.maximum(inner, wrap)
    out = []
    for i in range(3):
        if widest[i] * spacings[i] >= gap:
            out.append(i)
    return out


def domain_flags(obj, domain: TrainingDomain | None, min_count: int = MIN_COUNT) -> DomainFlags:
    """Flags for one structure (pymatgen ``Structure``, ASE ``Atoms`` or a :class:`Geometry`) against a
    training domain (None: the model stores none; only geometry and periodicity are checked).

    Raises what :func:`inspect_structure` raises for impossible structures.
    """
    geometry = obj if isinstance(obj, Geometry) else inspect_structure(obj)
    structure, contact, periodic = geometry.structure, geometry.contact, geometry.periodic_directions
    short = contact.describe(structure) if contact.fraction < SHORT_FRACTION else None
    if domain is None:
        return DomainFlags(short_contact=short, periodic_directions=periodic, unknown_domain=True)
    rare = {e.symbol: domain.element_counts.get(e.symbol, 0) for e in structure.composition.elements}
    rare = {e: n for e, n in sorted(rare.items()) if n < min_count}
    volume = structure.volume / len(structure)
    lo, hi = domain.volume_per_atom
    outside = volume if not lo <= volume <= hi else None
    return DomainFlags(rare, short, outside, domain.volume_per_atom if outside is not None else None, periodic)
