"""Predictions for structure files with the shipped (or any saved) CGAT models: ``mgl-cgat predict``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

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


def read_structure_files(paths: Sequence[str | Path], on_error: str = "raise",
                         skipped: list | None = None) -> dict:
    """``{id: Structure}`` from CIF, POSCAR/CONTCAR/.vasp, (ext)XYZ and JSON files.

    Ids are file stems; multi-structure files add ``:index`` (or use ``info['id']`` / the JSON id).
    JSON: a pymatgen structure dict, a list of them, or records with ``structure`` and ``mat_id``/``id``.

    Args:
        on_error: "raise" (default): :class:`DataError` naming the file for the first unreadable one;
            "skip": leave it out and append ``(file, reason)`` to ``skipped``, as ``load_dataset`` does.
    """
    from pymatgen.core import Structure

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    out: dict = {}

    def add(key: str, structure, where: str) -> None:
        if key in out:
            raise DataError(f"{where}: duplicate structure id {key!r}")
        out[key] = structure

    for raw in paths:
        path = Path(raw)
        found: dict = {}
        try:
            if not path.is_file():
                raise DataError(f"{path}: no such file")
            name = path.name.lower()
            if name.endswith((".xyz", ".extxyz")):
                from ase.io import iread

                for i, atoms in enumerate(iread(str(path), index=":")):  # Atoms kept: their pbc is a domain flag
                    found[str(atoms.info.get("id", f"{path.stem}:{i}"))] = (atoms, str(path))
            elif name.endswith(".json"):
                doc = json.loads(path.read_text())
                docs = doc if isinstance(doc, list) else [doc]
                for i, d in enumerate(docs):
                    sd = d.get("structure", d) if isinstance(d, dict) else d
                    rid = (d.get("mat_id") or d.get("id")) if isinstance(d, dict) and "structure" in d else None
                    key = str(rid or (path.stem if len(docs) == 1 else f"{path.stem}:{i}"))
                    found[key] = (Structure.from_dict(sd), f"{path}, item {i}")
            else:  # CIF, POSCAR, CONTCAR, *.vasp and anything pymatgen recognises
                found[path.stem if path.suffix else path.name] = (Structure.from_file(path), str(path))
        except Exception as exc:  # the parsers raise many types
            error = exc if isinstance(exc, DataError) else DataError(
                f"{path}: cannot read a structure ({type(exc).__name__}: {exc})")
            if on_error == "raise":
                raise error from None
            if skipped is not None:
                skipped.append((str(path), str(error)))
            continue
        for key, (structure, where) in found.items():
            add(key, structure, where)
    return out


class MetalDecision(NamedTuple):
    """A metal gate's answer for one crystal, as ``predict_all`` rows carry it (``<model> metal``)."""

    metal: bool
    probability: float
    below: float  # the gap (eV) under which the gate's training labels counted as metals


class FidelityView:
    """One fidelity of a multi-fidelity CGAT, seen as a one-property model (a column of a table)."""

    def __init__(self, model, fidelity: str):
        self.model, self.column = model, model.fidelity_index(fidelity)
        self.fidelity = model.fidelities[self.column]
        card = dict(model.metadata or {}) if isinstance(getattr(model, "metadata", None), dict) else {}
        card["property"] = (card.get("label_columns") or {}).get(self.fidelity, card.get("property"))
        self.metadata = card
        self.sigma_head = model.sigma_head
        self.metal_head = getattr(model, "metal_head", None)
        self.metal_below = getattr(model, "metal_below", 0.1)

    def metal_decision(self, g):
        """(B, 1) decisions and probabilities of this fidelity's output, as ``CGAT.metal_decision``."""
        decided, probability = self.model.metal_decision(g)
        return decided[:, self.column : self.column + 1], probability[:, self.column : self.column + 1]

    def graph_converter(self):
        return self.model.graph_converter()

    def eval(self):
        self.model.eval()
        return self

    def __call__(self, g, return_sigma: bool = False):
        pred, sigma = self.model.outputs(g, return_sigma=return_sigma)  # (B, F): pick the column, then squeeze
        if return_sigma:
            return pred[:, self.column].squeeze(), sigma[:, self.column].squeeze()
        return pred[:, self.column].squeeze()


def by_fidelity(models: dict, fidelity: str | None = None) -> dict:
    """Models for a table: a multi-fidelity model becomes one column per fidelity (``name[hse]``), or
    only ``fidelity``'s; single-fidelity models pass through."""
    out = {}
    for name, model in models.items():
        names = getattr(model, "fidelities", None)
        if not names:
            out[name] = model
            continue
        for f in ([names[model.fidelity_index(fidelity)]] if fidelity else names):
            out[f"{name}[{f}]"] = FidelityView(model, f)
    if fidelity and len(out) == len(models) and not any(isinstance(m, FidelityView) for m in out.values()):
        raise ValueError(f"--fidelity {fidelity}: none of the models is a multi-fidelity model")
    return out


def property_of(model) -> str | None:
    return (getattr(model, "metadata", None) or {}).get("property")


def predict_all(models: dict, structures: dict, references: dict | None = None, on_error: str = "raise",
                skipped: list | None = None, potential=None, potential_on_error: str | None = None) -> list[dict]:
    """One row per structure: id, formula, then per model its prediction, sigma and domain flags.

    Row keys: ``<model>`` (value), ``<model> sigma`` (for models with an uncertainty head), ``<model>
    metal`` (a :class:`MetalDecision`, for models with a metal gate), ``<model> missing`` (why a
    Δ-model's value is None: its potential could not take the structure, with ``on_error="skip"`` or
    ``potential_on_error="skip"``, which applies to the Δ-models' potentials alone),
    ``<model> flags`` (:class:`~matgl_cgat.domain.DomainFlags` against that model's training domain).
    Each structure is converted once per distinct converter setting, not once per model. With
    ``references`` (``{structure id: {"mat_id", label: value}}``, see
    :func:`matgl_cgat._reference.find_in_data`) a row also gets ``reference_id`` and, per model, the
    reference value of the model's property as ``<model> label`` (empty when there is none).

    A structure no crystal can have (:class:`~matgl_cgat.graph.ImpossibleStructure`) raises
    :class:`DataError` naming it, or with ``on_error="skip"`` is left out and reported in ``skipped``.

    A Δ-model (its card records a potential anchor, :mod:`matgl_cgat.potentials`) predicts its
    potential's formation enthalpy plus its own output; ``potential`` is where to find that potential
    when it is not in MatGL's cache (a folder). A structure the potential cannot handle is an error
    naming it, or a skip.
    """
    import torch

    from matgl_cgat.domain import TrainingDomain, domain_flags, formula_of, inspect_structure

    baselines = _anchor_values(models, structures, potential_on_error or on_error, potential)
    rows = []
    for sid, s in structures.items():
        row: dict = {"id": sid, "formula": formula_of(s)}
        graphs: dict = {}
        try:  # what can be wrong with the input: checked once per structure, graphs once per converter
            geometry = inspect_structure(s)
            for model in models.values():
                converter = model.graph_converter()
                key = tuple(sorted(converter.settings().items()))
                if key not in graphs:
                    graphs[key] = converter.get_graph(geometry.structure)[0]
        except (ValueError, TypeError) as exc:  # ImpossibleStructure is a ValueError
            error = DataError(f"structure {sid!r} ({formula_of(s)}): {exc}")
            if on_error == "raise":
                raise error from None
            if skipped is not None:
                skipped.append((sid, str(error)))
            continue
        for name, model in models.items():  # a failing model is the model's error, never a skipped input
            why_not = baselines[name][1].get(sid) if name in baselines else None
            if why_not:  # a Δ-model whose potential cannot take this input: its value alone stays empty,
                row[name] = None  # the other models still answer
                row[f"{name} missing"] = why_not
            else:
                model.eval()
                graph = graphs[tuple(sorted(model.graph_converter().settings().items()))]
                with torch.no_grad():
                    if getattr(model, "sigma_head", None) is not None:
                        value, sigma = model(graph, return_sigma=True)
                        row[f"{name} sigma"] = float(sigma)
                    else:
                        value = model(graph)
                    if getattr(model, "metal_head", None) is not None:
                        decided, probability = model.metal_decision(graph)
                        row[f"{name} metal"] = MetalDecision(bool(decided[0, 0]), float(probability[0, 0]),
                                                             float(getattr(model, "metal_below", 0.1)))
                row[name] = float(value) + (baselines[name][0][sid] if name in baselines else 0.0)
            row[f"{name} flags"] = domain_flags(geometry, TrainingDomain.of_model(model))
            if references is not None:
                row[f"{name} label"] = references.get(sid, {}).get(property_of(model), "")
        if references is not None:
            row["reference_id"] = references.get(sid, {}).get("mat_id", "")
            row["measured"] = {k: references[sid][k] for k, _, _ in MEASURED if k in references.get(sid, {})}
        rows.append(row)
    return rows


def _anchor_values(models: dict, structures: dict, on_error: str, potential) -> dict:
    """``{model name: ({structure id: anchor value}, {structure id: why none})}`` for the Δ-models."""
    out = {}
    for name, model in models.items():
        card = getattr(model, "metadata", None)
        if not (isinstance(card, dict) and "anchor" in card):
            continue
        from matgl_cgat.potentials import anchor_of

        ids = list(structures)
        values, why_not = anchor_of(model).values(list(structures.values()), ids, potential=potential,
                                                   on_error=on_error)
        out[name] = (dict(zip(ids, map(float, values))), why_not)
    return out


#: Files beside ``mp_gap.jsonl.gz`` whose values for the same crystals the demo shows too.
MEASURED_FILES = ("hifi_eform.jsonl.gz", "exp_gap.jsonl.gz")
#: Measured quantities shown in their own column wherever the shared data has them: (label, name, units).
MEASURED = (("gap_exp", "gap", "eV"), ("e_form_exp", "ΔHf", "eV/atom"))


def units_of(model) -> str:
    return (getattr(model, "metadata", None) or {}).get("units", "")


#: Decimals written to CSV/JSON: 0.1 meV(/atom) or 0.1 meV of a gap, far below any model's error.
DECIMALS = 4
#: Suffixes ``--out`` writes.
OUT_FORMATS = {".csv": "csv", ".json": "json"}


def _rounded(value):
    return round(value, DECIMALS) if isinstance(value, float) else value


def _flags(row: dict, name: str):
    return row.get(f"{name} flags")


def format_rows(rows: list[dict], models: dict, fmt: str) -> str:
    """Rows as "csv", "json" or an aligned "table", with units in the headers and rounded values.

    CSV columns per model: ``<model> (<units>)``, ``<model> sigma (<units>)``, ``<model> label
    (<units>)`` (with references), ``<model> metal`` and ``<model> metal probability`` (gated models),
    ``<model> flags`` (domain messages joined by ``; ``). JSON nests the same per model: ``{"value",
    "sigma", "label", "metal", "metal_probability", "flags": [...]}``.
    """
    if fmt == "json":
        out = []
        for r in rows:
            item = {"id": r["id"], "formula": r["formula"]}
            for n in models:
                entry = {"value": _rounded(r[n])}
                if f"{n} missing" in r:
                    entry["missing"] = r[f"{n} missing"]
                if f"{n} sigma" in r:
                    entry["sigma"] = _rounded(r[f"{n} sigma"])
                if f"{n} label" in r:
                    entry["label"] = _rounded(r[f"{n} label"]) if r[f"{n} label"] != "" else None
                if f"{n} metal" in r:
                    entry["metal"], entry["metal_probability"] = r[f"{n} metal"].metal, _rounded(r[f"{n} metal"].probability)
                flags = _flags(r, n)
                entry["flags"] = flags.messages() if flags is not None else []
                item[n] = entry
            if "reference_id" in r:
                item["reference_id"] = r["reference_id"] or None
            if "measured" in r:
                item["measured"] = {k: _rounded(v) for k, v in r["measured"].items()}
            out.append(item)
        return json.dumps({"units": {n: units_of(m) for n, m in models.items()}, "predictions": out}, indent=2)
    if fmt == "csv":
        table = []
        for r in rows:
            line = {"id": r["id"], "formula": r["formula"]}
            for n, m in models.items():
                unit = f" ({units_of(m)})" if units_of(m) else ""
                line[f"{n}{unit}"] = "" if r[n] is None else _rounded(r[n])
                if any(f"{n} missing" in x for x in rows):  # a Δ-model without a value somewhere: say why
                    line[f"{n} missing"] = r.get(f"{n} missing", "")
                if f"{n} sigma" in r:
                    line[f"{n} sigma{unit}"] = _rounded(r[f"{n} sigma"])
                if f"{n} label" in r:
                    line[f"{n} label{unit}"] = _rounded(r[f"{n} label"])
                if f"{n} metal" in r:
                    line[f"{n} metal"] = "yes" if r[f"{n} metal"].metal else "no"
                    line[f"{n} metal probability"] = _rounded(r[f"{n} metal"].probability)
                flags = _flags(r, n)
                line[f"{n} flags"] = "; ".join(flags.messages()) if flags is not None else ""
            if "reference_id" in r:
                line["reference_id"] = r["reference_id"]
                for key, _, unit in MEASURED:
                    line[f"measured {key} ({unit})"] = _rounded(r.get("measured", {}).get(key, ""))
            table.append(line)
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for line in table for k in line)) or ["id", "formula"]  # every row's
        writer = csv.DictWriter(buf, fieldnames=fields, restval="")  # columns, in first-seen order
        writer.writeheader()
        writer.writerows(table)
        return buf.getvalue()
    labelled = any(f"{n} label" in r for r in rows for n in models)
    with_sigma = any(f"{n} sigma" in r for r in rows for n in models)

    gated = [r[f"{n} metal"] for r in rows for n in models if f"{n} metal" in r]
    width = 6 + (8 if with_sigma else 0)  # "+0.000 ± 0.000"; a gate's "metal p 0.94" shares the column
    width = max(width, 12) if gated else width

    def cell(r: dict, n: str) -> str:
        decision = r.get(f"{n} metal")
        if r[n] is None:  # a Δ-model whose potential could not take this structure (see the notes)
            text = "n/a"
        elif decision is not None and decision.metal:  # the gate decided: its probability, not a gap and a sigma
            text = f"metal p {decision.probability:.2f}"
        elif f"{n} sigma" in r:
            text = f"{r[n]:+.3f} ± {r[f'{n} sigma']:.3f}"
        else:
            text = f"{r[n]:+.3f}"
        text = text.ljust(width)
        label = r.get(f"{n} label", "")
        return text + (f" ({label:+.3f})" if label != "" else "    " if labelled else "")

    def domain(r: dict) -> str:
        shorts = {n: f.short() for n in models if (f := _flags(r, n)) is not None}
        distinct = set(shorts.values())
        if len(distinct) <= 1:
            return distinct.pop() if distinct else "-"
        return "; ".join(f"{n}: {v}" for n, v in shorts.items() if v != "-")

    headers = ["structure", "formula"] + [f"{n} ({units_of(m)})" for n, m in models.items()] + ["domain flags"]
    table = [[r["id"], r["formula"]] + [cell(r, n) for n in models] + [domain(r)] for r in rows]
    if labelled:
        headers.append("in mp_gap")
        table = [line + [r.get("reference_id", "") or "-"] for line, r in zip(table, rows)]
    if any(r.get("measured") for r in rows):
        headers.append("measured")
        table = [line + [", ".join(f"{name} {r['measured'][k]:+.3f} {unit}" for k, name, unit in MEASURED
                                   if k in r.get("measured", {})) or "-"] for line, r in zip(table, rows)]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [headers, *table]]
    if with_sigma:
        lines.append("(± sigma: the model's standard deviation for this crystal, errors modelled as Laplace: the 68% "
                     "interval is ± 0.81 sigma, the 95% one ± 2.12 sigma; measured coverage in the model card)")
    if gated:
        below = " / ".join(sorted({f"{d.below:g}" for d in gated}))
        lines.append(f"(metal p: the model's metal gate calls the crystal a metal (gap below {below} eV) with "
                     "probability p; its threshold was placed on validation; the card gives both error rates)")
    if labelled:
        lines.append("(in brackets: the reference value of the model's own property for the same crystal in the shared "
                     "mp_gap data (DFT; measured for the Exp- models), matched with pymatgen's StructureMatcher)")
    if any(r.get("measured") for r in rows):
        lines.append("(measured: the experimental band gap (exp_gap.jsonl.gz) and formation enthalpy (hifi_eform.jsonl.gz) "
                     "of the same crystal where the shared data has one)")
    for r in rows:
        for n in models:
            if f"{n} missing" in r:
                lines.append(f"(n/a: {n} has no value here; {r[f'{n} missing']})")
    if any(r.get(f"{n} flags") for r in rows for n in models):
        lines.append("(domain flags: Xx(n) = element in only n training structures; short-contact = atoms closer than "
                     "0.6 of their covalent bond length; V/atom = volume outside the training range; 2D/1D = reduced "
                     "periodicity; domain? = the model stores no training domain)")
    return "\n".join(lines)
