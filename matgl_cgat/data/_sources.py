"""Readers for the data formats of the field, as streams of raw work items.

A reader only splits its source into records (cheap, sequential); turning a record into a structure
and labels (:func:`materialise`) is the expensive part and runs in the conversion workers. Every
item carries its location (file and line, entry or frame) so that any error can name it.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import DataError

ENERGY_PER_ATOM = "energy_per_atom"


@dataclass(frozen=True)
class Item:
    """One raw record: where it is, how to read it, and the raw payload."""

    location: str
    kind: str  # "json" (a JSON text line), "entry" (a ComputedStructureEntry dict), "cif", "object"
    payload: Any


@dataclass(frozen=True)
class ReadSpec:
    """How to find ids, structures and labels in a record."""

    targets: tuple[str, ...]
    id_key: str = "mat_id"
    structure_key: str = "structure"
    require: str = "all"  # "all": every target must be present; "any": at least one (others NaN)


class LabelMissing(Exception):
    """A record has no usable label: skipped and counted, never an error."""

    def __init__(self, record_id: str, reason: str):
        super().__init__(reason)
        self.record_id = record_id


def detect_format(source: Path) -> str:
    """Guess the format from the path: jsonl, alexandria, cif, extxyz."""
    name = source.name.lower()
    if source.is_dir():
        if (source / "id_prop.csv").is_file():
            return "cif"
        if any(p.name.endswith((".json.bz2", ".json")) for p in source.iterdir()):
            return "alexandria"
        raise DataError(f"{source}: a folder needs id_prop.csv (CIF files) or *.json.bz2 / *.json (Alexandria) files")
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith((".json.bz2", ".json")):
        return "alexandria"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    raise DataError(f"{source}: unknown data format (use .jsonl[.gz], .json[.bz2], .extxyz, or a CIF folder)")


def source_files(source: Path, fmt: str) -> list[Path]:
    """The files a source consists of, in a fixed order."""
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    if fmt == "cif":
        return [source / "id_prop.csv"]
    if source.is_dir():
        return sorted(p for p in source.iterdir() if p.name.endswith((".json.bz2", ".json")))
    return [source]


def fingerprint_files(files: Sequence[Path], fmt: str) -> list:
    """Identity of file sources for cache keys: name, size and content hash of each file.

    Content, not path or modification time: a data set copied afresh to another place (a new
    session, a cluster's scratch disk) is the same data, and must find its converted graphs and let
    an interrupted training resume; an edit that keeps size and time must not. Hashing reads the
    files once (about 0.1 s for 40 MB). For a CIF folder the CIF files count too.
    """
    paths = list(files)
    if fmt == "cif":
        paths += sorted(files[0].parent.glob("*.cif"))
    out = []
    for p in paths:
        with open(p, "rb") as fh:
            out.append([p.name, p.stat().st_size, hashlib.file_digest(fh, "sha256").hexdigest()])
    return out


def fingerprint_objects(objects: Sequence, labels: dict[str, Sequence[float]], ids: Sequence[str]) -> str:
    """Content hash of in-memory structures (pymatgen or ASE), labels and ids."""
    h = hashlib.sha256()
    for obj in objects:
        if hasattr(obj, "get_cell"):  # ASE Atoms
            arrays = (obj.numbers, obj.get_cell().array, obj.get_scaled_positions(wrap=False))
        else:
            arrays = (np.array(obj.atomic_numbers if obj.is_ordered else [0]), obj.lattice.matrix, obj.frac_coords)
            if not obj.is_ordered:
                h.update(json.dumps(obj.as_dict(), sort_keys=True, default=str).encode())
        for a in arrays:
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    # labels are hashed as given (a missing one is None; a bad one is reported by the reader, not here)
    h.update(json.dumps({k: [v if v is None else repr(v) for v in vals] for k, vals in labels.items()},
                        sort_keys=True).encode())
    h.update(json.dumps(list(ids)).encode())
    return h.hexdigest()


def _open_text(path: Path):
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rt")
    if name.endswith(".bz2"):
        return bz2.open(path, "rt")
    return open(path)


def iter_items(source: Path, fmt: str) -> Iterator[Item]:
    """Stream the raw records of a file source."""
    if fmt == "jsonl":
        yield from _jsonl_items(source)
    elif fmt == "alexandria":
        for f in source_files(source, fmt):
            yield from _alexandria_items(f)
    elif fmt == "cif":
        yield from _cif_items(source)
    elif fmt == "extxyz":
        yield from _extxyz_items(source)
    else:
        raise DataError(f"{source}: unknown format {fmt!r}")


def _jsonl_items(path: Path) -> Iterator[Item]:
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    yield Item(f"{path}, line {lineno}", "json", line)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def _alexandria_items(path: Path) -> Iterator[Item]:
    try:
        with _open_text(path) as f:
            doc = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected an object with an 'entries' list (Alexandria layout)")
    for i, entry in enumerate(entries):
        yield Item(f"{path}, entry {i}", "entry", entry)


#: id_prop.csv values that mean "no label" (a counted skip, like a missing JSON field); any other
#: value that is not a number is a malformed record (:class:`DataError` naming it and the value).
MISSING_TEXT = frozenset({"", "nan", "na", "n/a", "none", "null", "?"})


def _is_header(folder: Path, row: list[str]) -> bool:
    """Whether the first row of id_prop.csv is a header (names the columns) rather than a record.

    Only when it cannot be a record: its first field names no CIF file in the folder AND some value
    field is neither a number nor a missing-value marker. A first row that names an existing CIF
    (``a,hello`` with ``a.cif`` present) is a record, so record ``a`` is never silently lost, and its
    bad value is then reported for record ``a``; a row of numbers is a record even when its CIF is
    missing (then *that* is the error), never a header with numeric column names.
    """
    if len(row) < 2:
        return False
    rid = row[0].strip()
    if rid and (folder / f"{rid}.cif").is_file():
        return False
    return any(not _is_number(v) and v.strip().lower() not in MISSING_TEXT for v in row[1:])


def _cif_items(folder: Path) -> Iterator[Item]:
    table = folder / "id_prop.csv"
    try:
        with open(table, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{table}: cannot read ({exc})") from None
    header = None
    if rows and _is_header(folder, rows[0]):
        header, rows = rows[0], rows[1:]
    for lineno, row in enumerate(rows, start=2 if header else 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise DataError(f"{table}, line {lineno}: expected 'id,value[,value...]', got {row!r}")
        rid = row[0].strip()
        if not rid or "/" in rid or "\\" in rid or rid in (".", "..") or "\0" in rid:
            # an id names a CIF file *in this folder*; a path would read files from anywhere
            raise DataError(f"{table}, line {lineno}: id {rid!r} is not a plain file name (ids name CIF files "
                            "inside the data folder; no folders, no '..')")
        yield Item(f"{table}, line {lineno} ({rid}.cif)", "cif",
                   (str(folder / f"{rid}.cif"), rid, row[1:], header, lineno))


def _extxyz_items(path: Path) -> Iterator[Item]:
    from ase.io import iread

    frame = 0
    try:
        for atoms in iread(str(path), index=":", format="extxyz"):
            values = dict(atoms.info)
            if atoms.calc is not None:  # ASE moves energy & co. from info to a single-point calculator
                for k, v in atoms.calc.results.items():
                    if np.ndim(v) == 0:
                        values.setdefault(k, v)
            yield Item(f"{path}, frame {frame}", "object", (atoms.info.get("id"), atoms, values))
            frame += 1
    except Exception as exc:  # ASE raises several types for malformed files
        raise DataError(f"{path}, frame {frame}: cannot parse extended XYZ ({exc})") from None


def _structure_types() -> tuple[type, ...]:
    from pymatgen.core import IStructure

    types: tuple[type, ...] = (IStructure,)  # Structure is an IStructure
    try:
        from ase import Atoms

        types += (Atoms,)
    except ImportError:  # pragma: no cover - ASE is a dependency of MatGL
        pass
    return types


def _explicit_label(value: Any) -> tuple[float | None, str | None]:
    """``(value, None)`` for a finite number, ``(None, None)`` for NaN/None, ``(None, problem)`` otherwise.

    Anything ``float()`` takes counts as a number (Python and NumPy numbers, 0-d arrays and tensors)
    except text and booleans: a label list holding ``"1.5"`` or ``True`` is almost surely a mistake.
    """
    if value is None:
        return None, None
    if isinstance(value, (str, bytes, bool, np.bool_)):
        return None, f"not a number ({type(value).__name__})"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None, f"not a number ({type(value).__name__})"
    if math.isnan(v):
        return None, None
    if not math.isfinite(v):
        return None, "not finite"
    return v, None


def check_objects(objects: Sequence, labels: dict[str, Sequence], ids: Sequence[str],
                  require: str = "all") -> dict[str, list[float]]:
    """Check in-memory structures and their labels before any conversion; return the labels as floats.

    The caller gave these lists explicitly, so nothing in them is dropped or replaced silently:

    * every item must be a pymatgen ``Structure``/``IStructure`` or an ASE ``Atoms``;
    * a label that is not a finite number (text, a boolean, ``inf``) is an error;
    * a missing label (``None`` or NaN) is an error with ``require="all"``; with ``require="any"``
      (multi-fidelity data) it marks that target as absent for the structure, which still needs at
      least one label.

    Raises:
        DataError: naming the structure (index and id), the target and the value or type received.
    """
    types = _structure_types()
    for i, obj in enumerate(objects):
        if not isinstance(obj, types):
            hint = " (to read a file, pass its path to load_dataset, or use Structure.from_file)" \
                if isinstance(obj, (str, Path)) else ""
            raise DataError(f"structure {i} (id {ids[i]!r}): expected a pymatgen Structure/IStructure or ASE Atoms, "
                            f"got {type(obj).__name__} {obj!r:.60}{hint}")
    out: dict[str, list[float]] = {t: [] for t in labels}
    for i in range(len(objects)):
        missing = []
        for t, vals in labels.items():
            v, problem = _explicit_label(vals[i])
            if problem:
                raise DataError(f"structure {i} (id {ids[i]!r}): label {t!r} is {vals[i]!r:.60}: {problem}")
            if v is None:
                missing.append(t)
            out[t].append(math.nan if v is None else v)
        if missing and (require == "all" or len(missing) == len(labels)):
            raise DataError(f"structure {i} (id {ids[i]!r}): label {', '.join(repr(t) for t in missing)} is "
                            f"{labels[missing[0]][i]!r}; every structure given with labels= needs a finite label "
                            "(leave it out of the list instead"
                            + (", or use require='any' when some targets may be missing"
                               if require == "all" and len(labels) > 1 else "") + ")")
    return out


def object_items(objects: Sequence, labels: dict[str, Sequence[float]], ids: Sequence[str]) -> Iterator[Item]:
    """Items for in-memory structures with a label array per target."""
    for i, obj in enumerate(objects):
        yield Item(f"structure {i} ({ids[i]})", "object", (ids[i], obj, {k: v[i] for k, v in labels.items()}))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer, str)):
        return math.nan
    try:
        v = float(value)
    except ValueError:
        return math.nan
    return v if math.isfinite(v) else math.nan


def _finish_labels(rid: str, values: dict[str, float], spec: ReadSpec) -> dict[str, float]:
    missing = [t for t in spec.targets if math.isnan(values[t])]
    if missing and (spec.require == "all" or len(missing) == len(spec.targets)):
        raise LabelMissing(rid, f"label {', '.join(repr(t) for t in missing)} missing or not a finite number")
    return values


def materialise(item: Item, spec: ReadSpec):
    """Parse one item into ``(id, structure or Atoms, labels)``.

    Raises:
        DataError: the record is malformed (message names its location).
        LabelMissing: a required label is absent or not finite.
    """
    from pymatgen.core import Structure

    where = item.location
    if item.kind == "json":
        rid, record = json_record(item, spec)
        values = {t: _label(record.get(t)) for t in spec.targets}
        _finish_labels(rid, values, spec)
        if spec.structure_key not in record:
            raise DataError(f"{where} ({rid}): no {spec.structure_key!r} field")
        structure = _structure_from_dict(record[spec.structure_key], f"{where} ({rid})")
        return rid, structure, values
    if item.kind == "entry":
        entry = item.payload
        if not isinstance(entry, dict) or "structure" not in entry:
            raise DataError(f"{where}: not a ComputedStructureEntry dict (no 'structure')")
        data = entry.get("data") or {}
        rid = data.get(spec.id_key) or entry.get("entry_id") or data.get("mat_id")
        if rid is None:
            raise DataError(f"{where}: no id (data[{spec.id_key!r}] or entry_id)")
        structure = _structure_from_dict(entry["structure"], f"{where} ({rid})")
        values = {}
        for t in spec.targets:
            if t in data:
                values[t] = _label(data[t])
            elif t == ENERGY_PER_ATOM and "energy" in entry:
                values[t] = _label(entry["energy"]) / len(structure)
            else:
                values[t] = _label(entry.get(t))
        _finish_labels(str(rid), values, spec)
        return str(rid), structure, values
    if item.kind == "cif":
        path, rid, raw_values, header, lineno = item.payload
        names = [n.strip() for n in header[1:]] if header else None
        table = Path(path).parent / "id_prop.csv"
        if names is not None:
            unknown = [t for t in spec.targets if t not in names]
            if unknown:  # a fault of the header (line 1), not of this record
                raise DataError(
                    f"{table}, line 1: read as a header (its first field {header[0].strip()!r} names no CIF file in "
                    f"the folder and its values are not numbers), but it has no column {unknown} (columns: {names}); "
                    "name the value columns after the targets, or drop the header and give one value column per "
                    "target"
                )
            if len(raw_values) != len(names):
                raise DataError(f"{where}: {len(raw_values)} value(s) for the {len(names)} column(s) {names} "
                                "of the header")
        elif len(raw_values) != len(spec.targets):
            raise DataError(
                f"{where}: {len(raw_values)} value column(s) for {len(spec.targets)} target(s) {list(spec.targets)}; "
                "add a header row naming the columns"
            )
        column = dict(zip(names, raw_values)) if names else dict(zip(spec.targets, raw_values))
        for t in spec.targets:
            text = column[t].strip()
            if text.lower() not in MISSING_TEXT and not _is_number(text):
                note = (f" (line 1 is read as record {rid!r}, not as a header, because {rid}.cif exists)"
                        if lineno == 1 else "")
                raise DataError(f"{where}: record {rid!r}: value {text!r} of {t!r} is not a number{note}")
        values = {t: _label(column[t].strip()) for t in spec.targets}
        _finish_labels(rid, values, spec)
        if not os.path.isfile(path):
            raise DataError(f"{where}: CIF file {path} not found")
        try:
            structure = Structure.from_file(path)
        except Exception as exc:  # pymatgen's CIF parser raises many types
            raise DataError(f"{where}: cannot parse {path} ({exc})") from None
        return rid, structure, values
    if item.kind == "object":
        rid, obj, raw = item.payload
        if rid is None:
            raise DataError(f"{where}: no id (set info['id'] in each frame)")
        values = {t: _label(raw.get(t)) for t in spec.targets}
        _finish_labels(str(rid), values, spec)
        return str(rid), obj, values
    raise DataError(f"{where}: unknown item kind {item.kind!r}")


def json_record(item: Item, spec: ReadSpec) -> tuple[str, dict]:
    """A JSON line's id and record, checked (valid JSON, an object, an id); the structure not parsed."""
    where = item.location
    try:
        record = json.loads(item.payload)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    rid = record.get(spec.id_key)
    if rid is None:
        raise DataError(f"{where}: no {spec.id_key!r} field")
    return str(rid), record


def _structure_from_dict(d: Any, where: str):
    from pymatgen.core import Structure

    if not isinstance(d, dict):
        raise DataError(f"{where}: structure is not a dict")
    try:
        return Structure.from_dict(d)
    except Exception as exc:  # pymatgen raises KeyError/TypeError/ValueError for malformed dicts
        raise DataError(f"{where}: cannot parse the structure ({type(exc).__name__}: {exc})") from None


@dataclass
class Records:
    """Structures with labels, in source order, plus what was left out and why."""

    ids: list[str] = field(default_factory=list)
    structures: list = field(default_factory=list)
    labels: dict[str, list[float]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def read_structures(
    source: str | Path,
    target: str | Sequence[str],
    *,
    ids: Iterable[str] | None = None,
    on_error: str = "raise",
    require: str = "all",
    format: str | None = None,  # noqa: A002
    id_key: str = "mat_id",
    structure_key: str = "structure",
) -> Records:
    """Read structures and labels (no graphs) from any source ``load_dataset`` reads, serially.

    For other models' converters (e.g. M3GNet on the same data). ``ids`` keeps only those records.
    Bad records and missing labels are handled as in ``load_dataset``.
    """
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    targets = (target,) if isinstance(target, str) else tuple(target)
    spec = ReadSpec(targets, id_key=id_key, structure_key=structure_key, require=require)
    wanted = set(ids) if ids is not None else None
    id_pattern = re.compile(rf'"{re.escape(id_key)}"\s*:\s*"([^"]*)"')
    out = Records(labels={t: [] for t in targets})
    for item in iter_items(path, format or detect_format(path)):
        if wanted is not None and item.kind == "json":  # skip unwanted lines without parsing them
            match = id_pattern.search(item.payload)
            if match and match.group(1) not in wanted:
                continue
        try:
            rid, structure, values = materialise(item, spec)
        except LabelMissing as exc:
            out.skipped.append((exc.record_id, f"{exc} ({item.location})"))
            continue
        except DataError as exc:
            if on_error == "raise":
                raise
            out.skipped.append((item.location, str(exc)))
            continue
        if wanted is not None and rid not in wanted:
            continue
        out.ids.append(rid)
        out.structures.append(structure)
        for t in targets:
            out.labels[t].append(values[t])
    return out
