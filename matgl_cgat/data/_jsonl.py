"""Reader for JSON-lines crystal data (the layout of ``mp_gap.jsonl.gz``), streaming and strict."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pymatgen.core import Structure

from ._errors import DataError


@dataclass
class Records:
    """Structures with labels, in file order, plus what was left out and why."""

    ids: list[str] = field(default_factory=list)
    structures: list[Structure] = field(default_factory=list)
    labels: dict[str, list[float]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) from a JSON-lines file, plain or gzip; bad JSON raises DataError."""
    path = Path(path)
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def read_jsonl(
    path: str | Path,
    targets: str | Iterable[str],
    *,
    id_key: str = "mat_id",
    structure_key: str = "structure",
    ids: Iterable[str] | None = None,
    limit: int | None = None,
) -> Records:
    """Read structures and labels from a JSON-lines file.

    Records whose labels are missing (null) or non-finite are skipped and listed in ``skipped``;
    malformed records raise :class:`DataError` naming the file and line.

    Args:
        path: ``.jsonl`` or ``.jsonl.gz`` file.
        targets: label key(s) to read; a record is kept only if all are present and finite.
        id_key, structure_key: field names.
        ids: keep only these ids (their order in the file is kept).
        limit: stop after this many kept records.
    """
    path = Path(path)
    targets = [targets] if isinstance(targets, str) else list(targets)
    wanted = set(ids) if ids is not None else None
    out = Records(labels={t: [] for t in targets})
    for lineno, record in iter_jsonl(path):
        where = f"{path}, line {lineno}"
        rid = record.get(id_key)
        if rid is None:
            raise DataError(f"{where}: no {id_key!r} field")
        rid = str(rid)
        if wanted is not None and rid not in wanted:
            continue
        values = []
        for t in targets:
            v = record.get(t)
            if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
                values = None
                out.skipped.append((rid, f"label {t!r} is missing or not a finite number ({v!r})"))
                break
            values.append(float(v))
        if values is None:
            continue
        if structure_key not in record:
            raise DataError(f"{where} ({rid}): no {structure_key!r} field")
        try:
            structure = Structure.from_dict(record[structure_key])
        except Exception as exc:  # pymatgen raises many types for malformed dicts
            raise DataError(f"{where} ({rid}): cannot parse the structure: {exc}") from None
        out.ids.append(rid)
        out.structures.append(structure)
        for t, v in zip(targets, values):
            out.labels[t].append(v)
        if limit is not None and len(out.ids) >= limit:
            break
    return out


def load_splits(path: str | Path, target: str) -> dict[str, list[str]]:
    """The fixed train/val/test id lists of ``target`` from a ``splits.json`` file."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read splits ({exc})") from None
    if target not in splits:
        raise DataError(f"{path}: no split for {target!r}; available: {sorted(splits)}")
    return {k: [str(i) for i in v] for k, v in splits[target].items()}
