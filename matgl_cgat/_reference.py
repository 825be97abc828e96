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
        for lineno, line in enumerate(_lines(f, data_file), start=1):
            candidates = [sid for sid, (_, needles, _, _) in wanted.items()
                          if sid not in found and all(n in line for n in needles)]
            if not candidates:
                continue
            try:
                record = json.loads(line)
                species = {sp["element"] for site in record["structure"]["sites"] for sp in site["species"]}
            except (ValueError, KeyError, TypeError) as exc:  # not the JSON-lines layout it claims to be
                from matgl_cgat.data import DataError

                raise DataError(f"{data_file}, line {lineno}: not a JSON-lines structure record "
                                f"({type(exc).__name__}: {exc}); --labels takes a file like mp_gap.jsonl.gz") from None
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


def _lines(f, data_file):
    """The file's lines; a file that is not text (a binary or a gzip file without .gz) is a named error."""
    try:
        yield from f
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        from matgl_cgat.data import DataError

        raise DataError(f"{data_file}: cannot be read as JSON lines ({type(exc).__name__}: {exc})") from None
