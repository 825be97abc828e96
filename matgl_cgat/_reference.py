"""Reference labels for predicted crystals: the same crystal's DFT values in the shared mp_gap data.

``mgl-cgat predict`` shows them beside each prediction, so a user sees at once how far a model is
from the calculation it imitates. A crystal counts as "in the data" when a record has the same
reduced formula and pymatgen's ``StructureMatcher`` (default tolerances, which ignore a uniform
scaling of the cell) matches the two structures. Lines are pre-filtered on their element symbols, so
only candidate records are parsed: a lookup of a few crystals reads the 35,592-record file in a
few seconds.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

def find_in_data(structures: dict, data_file: str | Path) -> dict[str, dict]:
    """``{structure id: {"mat_id": ..., label: value, ...}}`` for the structures found in ``data_file``."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    wanted = {}
    for sid, s in structures.items():
        if not hasattr(s, "composition"):  # ASE Atoms (from XYZ files): matched as pymatgen structures
            from pymatgen.io.ase import AseAtomsAdaptor

            s = AseAtomsAdaptor.get_structure(s)
        symbols = sorted({el.symbol for el in s.composition.elements})
        wanted[sid] = (s.composition.reduced_formula, [f'"element": "{x}"' for x in symbols], len(symbols), s)
    matcher = StructureMatcher()
    found: dict[str, dict] = {}
    opener = gzip.open if str(data_file).endswith(".gz") else open
    with opener(data_file, "rt") as f:
        for line in f:
            candidates = [sid for sid, (_, needles, _, _) in wanted.items()
                          if sid not in found and all(n in line for n in needles)]
            if not candidates:
                continue
            record = json.loads(line)
            species = {sp["element"] for site in record["structure"]["sites"] for sp in site["species"]}
            for sid in candidates:
                formula, _, count, structure = wanted[sid]
                if len(species) != count:
                    continue
                other = Structure.from_dict(record["structure"])
                if other.composition.reduced_formula == formula and matcher.fit(structure, other):
                    found[sid] = {"mat_id": record.get("mat_id", record.get("id")),
                                  **{k: v for k, v in record.items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool)}}
            if len(found) == len(wanted):
                break
    return found
