"""Predictions for structure files with the shipped (or any saved) CGAT models: ``mgl-cgat predict``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from matgl_cgat.data import DataError


def example_structures() -> dict:
    """Textbook crystals built with pymatgen: the default input of ``mgl-cgat predict``."""
    from pymatgen.core import Lattice, Structure

    return {
        "NaCl (rock salt)": Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]),
        "Si (diamond)": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),
        "GaAs (zincblende)": Structure.from_spacegroup("F-43m", Lattice.cubic(5.65), ["Ga", "As"], [[0] * 3, [0.25] * 3]),
        "SrTiO3 (perovskite)": Structure.from_spacegroup(
            "Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0.5] * 3, [0] * 3, [0.5, 0, 0]]
        ),
        "Cu (fcc)": Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]),
    }


def read_structure_files(paths: Sequence[str | Path]) -> dict:
    """``{id: Structure}`` from CIF, POSCAR/CONTCAR/.vasp, (ext)XYZ and JSON files.

    Ids are file stems; multi-structure files add ``:index`` (or use ``info['id']`` / the JSON id).
    JSON: a pymatgen structure dict, a list of them, or records with ``structure`` and ``mat_id``/``id``.
    """
    from pymatgen.core import Structure

    out: dict = {}

    def add(key: str, structure, where: str) -> None:
        if key in out:
            raise DataError(f"{where}: duplicate structure id {key!r}")
        out[key] = structure

    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        name = path.name.lower()
        try:
            if name.endswith((".xyz", ".extxyz")):
                from ase.io import iread
                from pymatgen.io.ase import AseAtomsAdaptor

                for i, atoms in enumerate(iread(str(path), index=":")):
                    add(str(atoms.info.get("id", f"{path.stem}:{i}")), AseAtomsAdaptor.get_structure(atoms), str(path))
            elif name.endswith(".json"):
                doc = json.loads(path.read_text())
                docs = doc if isinstance(doc, list) else [doc]
                for i, d in enumerate(docs):
                    sd = d.get("structure", d) if isinstance(d, dict) else d
                    rid = (d.get("mat_id") or d.get("id")) if isinstance(d, dict) and "structure" in d else None
                    add(str(rid or (path.stem if len(docs) == 1 else f"{path.stem}:{i}")), Structure.from_dict(sd),
                        f"{path}, item {i}")
            else:  # CIF, POSCAR, CONTCAR, *.vasp and anything pymatgen recognises
                add(path.stem if path.suffix else path.name, Structure.from_file(path), str(path))
        except DataError:
            raise
        except Exception as exc:  # the parsers raise many types
            raise DataError(f"{path}: cannot read a structure ({type(exc).__name__}: {exc})") from None
    return out


def property_of(model) -> str | None:
    return (getattr(model, "metadata", None) or {}).get("property")


def predict_all(models: dict, structures: dict, references: dict | None = None) -> list[dict]:
    """One row per structure: id, formula, then one prediction per model.

    Each structure is converted once per distinct converter setting, not once per model. With
    ``references`` (``{structure id: {"mat_id", label: value}}``, see
    :func:`matgl_cgat._reference.find_in_data`) a row also gets ``reference_id`` and, per model, the
    reference value of the model's property as ``<model> label`` (empty when there is none).
    """
    import torch

    rows = []
    for sid, s in structures.items():
        row = {"id": sid, "formula": s.composition.reduced_formula}
        graphs: dict = {}
        for name, model in models.items():
            converter = model.graph_converter()
            key = tuple(sorted(converter.settings().items()))
            if key not in graphs:
                graphs[key] = converter.get_graph(s)[0]
            model.eval()
            with torch.no_grad():
                row[name] = float(model(graphs[key]))
            if references is not None:
                row[f"{name} label"] = references.get(sid, {}).get(property_of(model), "")
        if references is not None:
            row["reference_id"] = references.get(sid, {}).get("mat_id", "")
        rows.append(row)
    return rows


def units_of(model) -> str:
    return (getattr(model, "metadata", None) or {}).get("units", "")


def format_rows(rows: list[dict], models: dict, fmt: str) -> str:
    """Rows as "csv", "json" or an aligned "table" with units in the header."""
    if fmt == "json":
        return json.dumps({"units": {n: units_of(m) for n, m in models.items()}, "predictions": rows}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["id", "formula"])
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    labelled = any(f"{n} label" in r for r in rows for n in models)

    def cell(r: dict, n: str) -> str:
        label = r.get(f"{n} label", "")
        return f"{r[n]:+.3f}" + (f" ({label:+.3f})" if label != "" else "    " if labelled else "")

    headers = ["structure", "formula"] + [f"{n} ({units_of(m)})" for n, m in models.items()]
    table = [[r["id"], r["formula"]] + [cell(r, n) for n in models] for r in rows]
    if labelled:
        headers.append("in mp_gap")
        table = [line + [r.get("reference_id", "") or "-"] for line, r in zip(table, rows)]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [headers, *table]]
    if labelled:
        lines.append("(in brackets: the DFT value of the same crystal in the shared mp_gap data, matched with "
                     "pymatgen's StructureMatcher)")
    return "\n".join(lines)
