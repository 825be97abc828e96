"""Formation enthalpies of many crystals from a universal potential, resumable and batched.

``formation_enthalpies`` is the one path from structures to a potential's formation enthalpy: the
potential's total energy (static on the given cell, or after a relaxation), minus its own elemental
references (:mod:`._references`), per atom. Energies go to an on-disk cache after every chunk, so a
rerun of an interrupted job computes only what is missing. A structure the potential cannot handle is
an error naming it, or with ``on_error="skip"`` a counted skip whose reason is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._cache import EnergyCache, default_cache_dir, structure_digest
from ._energy import EnergySource
from ._load import load_potential
from ._errors import PotentialError
from ._references import ElementalReferences, elemental_references
from ._relax import RelaxOptions, relax_atoms

ON_ERROR = ("raise", "skip")


@dataclass
class EnthalpyResult:
    """A potential's formation enthalpies for a list of structures.

    Attributes:
        ids: the structures' ids, in input order.
        e_form: formation enthalpy, eV/atom (NaN where skipped).
        energy: total energy, eV (NaN where skipped).
        skipped: id -> why it has no value.
        potential: the potential's identity.
        mode: ``"static"`` or the relaxation settings.
        references: the elemental references used.
        from_cache: how many energies were read from the cache instead of computed.
    """

    ids: list[str]
    e_form: np.ndarray
    energy: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)
    potential: str = ""
    mode: str = "static"
    references: ElementalReferences | None = None
    from_cache: int = 0

    def values(self) -> dict[str, float]:
        """id -> formation enthalpy for the structures that have one."""
        return {rid: float(v) for rid, v in zip(self.ids, self.e_form) if np.isfinite(v)}

    def summary(self) -> str:
        done = int(np.isfinite(self.e_form).sum())
        return (f"{done} of {len(self.ids)} formation enthalpies from {self.potential.split('|')[0]} "
                f"({self.mode}; {self.from_cache} from the cache); {len(self.skipped)} skipped")


def as_structures(structures: Sequence) -> list:
    """pymatgen structures from ``Structure`` or ASE ``Atoms`` items; anything else is a ``TypeError``."""
    from pymatgen.core import IStructure, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    out = []
    for i, s in enumerate(structures):
        if isinstance(s, (Structure, IStructure)):
            out.append(s)
        elif type(s).__name__ == "Atoms":
            out.append(AseAtomsAdaptor.get_structure(s))
        else:
            raise TypeError(f"item {i}: a pymatgen Structure or ASE Atoms, not {type(s).__name__}")
    return out


def formation_enthalpies(
    structures: Sequence,
    potential,
    *,
    ids: Sequence[str] | None = None,
    relax: RelaxOptions | None = None,
    references: ElementalReferences | None = None,
    reference_data: str | Path | None = None,
    reference_relax: RelaxOptions = RelaxOptions(keep_symmetry=True),
    cache_dir: str | Path | None = None,
    on_error: str = "raise",
    chunk: int = 64,
    progress: bool = True,
) -> EnthalpyResult:
    """Formation enthalpy (eV/atom) of each structure from a universal potential.

    Args:
        structures: pymatgen ``Structure`` or ASE ``Atoms`` objects.
        potential: an :class:`EnergySource` (``CalculatorEnergy(ase_calc, name=...)`` for any ASE
            calculator), or a MatGL potential's name or folder (see :func:`load_potential`).
        ids: one id per structure (default ``"0"``, ``"1"``, ...); they key the cache with each
            structure's content.
        relax: relax each structure first with these settings; None (default) takes static energies
            on the given cells.
        references: elemental references to use; default: computed by the same potential
            (:func:`elemental_references`, cached), with ``reference_data``'s elemental crystals
            among the candidates (for example ``mp_gap.jsonl.gz``).
        reference_relax: relaxation settings for the elemental references (default: symmetry kept, as
            :func:`elemental_references`; the labels of docs/results.md section 11 and the shipped
            anchor were made before this default, without the symmetry constraint).
        cache_dir: where energies and references are cached (default ``$MATGL_CGAT_CACHE`` or
            ``~/.cache/matgl_cgat``, folder ``potentials``).
        on_error: ``"raise"`` (default): a structure the potential cannot handle raises
            :class:`PotentialError` naming it; ``"skip"``: it is counted in ``result.skipped`` with why.
        chunk: structures computed between two cache writes.
        progress: show a progress bar.
    """
    from pymatgen.io.ase import AseAtomsAdaptor
    from tqdm.auto import tqdm

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be a positive number of structures, got {chunk!r}")
    source: EnergySource = load_potential(potential)
    structures = as_structures(structures)
    ids = [str(i) for i in range(len(structures))] if ids is None else [str(i) for i in ids]
    if len(ids) != len(structures):
        raise ValueError(f"{len(ids)} ids for {len(structures)} structures")
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"duplicate ids: {dup}")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    mode = "static" if relax is None else f"relax({relax.key()})"
    skipped: dict[str, str] = {}

    def fail(rid: str, exc: PotentialError) -> None:
        if on_error == "raise":
            raise exc
        skipped[rid] = str(exc)

    usable = []
    for rid, s in zip(ids, structures):
        try:
            if not s.is_ordered:
                raise PotentialError(f"{rid}: a disordered structure (partial occupancies); a potential needs an "
                                     "ordered cell")
            source.check_elements(s, rid)
            usable.append(rid)
        except PotentialError as exc:
            fail(rid, exc)
    by_id = dict(zip(ids, structures))
    if references is None:
        needed = {el.symbol for rid in usable for el in by_id[rid].composition.elements}
        references = elemental_references(source, needed, data_file=reference_data, relax=reference_relax,
                                          cache_dir=cache_dir, on_error=on_error, progress=progress)
    elif references.identity != source.identity:
        raise ValueError(f"the references were computed by {references.identity.split('|')[0]}, not by "
                         f"{source.name}: a formation enthalpy needs both from the same potential")

    for rid in list(usable):  # a structure holding an element without a reference has no value
        lacking = sorted(el.symbol for el in by_id[rid].composition.elements if el.symbol not in references.energies)
        if lacking:
            usable.remove(rid)
            fail(rid, PotentialError(f"{rid}: no elemental reference for {', '.join(lacking)}"
                                     + "".join(f" ({references.missing[el]})" for el in lacking
                                               if el in references.missing)))
    cache = EnergyCache(cache_dir, source.identity, mode)
    digests = {rid: structure_digest(by_id[rid]) for rid in usable}
    todo = [rid for rid in usable if cache.get(rid, digests[rid]) is None]
    from_cache = len(usable) - len(todo)
    calculator = source.calculator() if (relax is not None and todo) else None
    uncached: dict[str, PotentialError] = {}
    with tqdm(total=len(todo), desc=f"{source.name} energies ({mode})", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            if relax is None:
                energies = source.static_energies([by_id[r] for r in part], part)
            else:
                energies = []
                for r in part:
                    try:
                        energies.append(relax_atoms(AseAtomsAdaptor.get_atoms(by_id[r]), calculator, relax, r).energy)
                    except PotentialError as exc:
                        energies.append(exc)
            rows = []
            for r, e in zip(part, energies):
                if isinstance(e, PotentialError) and e.transient:  # reported, never cached: a rerun retries
                    uncached[r] = e
                    continue
                row = {"id": r, "digest": digests[r], "n_atoms": len(by_id[r])}
                row.update({"error": str(e)} if isinstance(e, PotentialError) else {"energy": float(e)})
                rows.append(row)
            cache.add(rows)
            bar.update(len(part))
    e_form = np.full(len(ids), np.nan)
    energy = np.full(len(ids), np.nan)
    position = {rid: i for i, rid in enumerate(ids)}
    for rid in usable:
        if rid in uncached:
            fail(rid, uncached[rid])
            continue
        row = cache.get(rid, digests[rid])
        if "error" in row:
            fail(rid, PotentialError(row["error"]))
            continue
        energy[position[rid]] = row["energy"]
        e_form[position[rid]] = references.formation_enthalpy(by_id[rid], row["energy"])
    return EnthalpyResult(ids, e_form, energy, skipped, source.identity, mode, references, from_cache)
