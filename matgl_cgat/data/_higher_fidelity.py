"""Targets beyond PBE in the shared data, and the yardsticks a model of them must be compared with.

A fine-tuned model of an r2SCAN or a measured value is only worth its cost if it beats what a user
could get otherwise: running the better functional itself, or reading off the PBE number. The shared
files carry those alternatives for the same crystals (r2SCAN and MP GGA beside the measured
enthalpies; HSE06, TB-mBJ, SCAN and PBE gaps from one benchmark beside the measured gaps). This
module names, for every target, the file and split it lives in and which other columns are its
yardsticks, and scores those yardsticks on exactly the crystals a model is tested on, so a table
never compares a model on one set of crystals with a functional on another.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._errors import DataError


@dataclass(frozen=True)
class Yardstick:
    """Another number for the same quantity: a column of the target's file, or of ``mp_gap.jsonl.gz``."""

    column: str
    label: str
    in_mp_gap: bool = False  # joined from mp_gap.jsonl.gz by mat_id (the PBE labels a parent trains on)


@dataclass(frozen=True)
class HigherFidelityTarget:
    """Where a target lives and what it is, for the cross-functional scripts and model cards."""

    column: str
    file: str
    splits: str
    functional: str
    units: str
    kind: str  # "formation energy" or "band gap"
    meaning: str  # what the numbers are, in words for a model card
    output_min: float | None
    yardsticks: tuple[Yardstick, ...] = field(default=())


_MP = "mp_gap (Materials Project structures; gaps of Chen et al. 2021), see shared/data/mp_gap/README.md"
_EFORM_MEANING = {
    "e_form_r2scan": "Materials Project r2SCAN formation enthalpy (Kingsbury et al. 2022), via RxnNet",
    "e_form_exp": ("measured standard formation enthalpy at room temperature (298 K) from the NBS tables "
                   "(Wagman et al. 1982), via RxnNet; a second compilation (Wang et al. 2021) agrees to "
                   "about 0.011 eV/atom, the measurement floor"),
}

TARGETS: dict[str, HigherFidelityTarget] = {
    **{column: HigherFidelityTarget(column, "mp_gap.jsonl.gz", "splits.json", functional, "eV", "band gap",
                                    f"{functional} band gap on the PBE geometry ({_MP})", 0.0)
       for column, functional in (("gap_pbe", "PBE"), ("gap_hse", "HSE06"), ("gap_gllbsc", "GLLB-SC"),
                                  ("gap_scan", "SCAN"))},
    "e_form_r2scan": HigherFidelityTarget(
        "e_form_r2scan", "hifi_eform.jsonl.gz", "hifi_eform_splits.json", "r2SCAN", "eV/atom", "formation energy",
        _EFORM_MEANING["e_form_r2scan"], None,
        (Yardstick("e_form_pbe", "PBE labels (e_form_pbe)", in_mp_gap=True),
         Yardstick("e_form_gga_mp", "MP GGA/GGA+U"))),
    "e_form_exp": HigherFidelityTarget(
        "e_form_exp", "hifi_eform.jsonl.gz", "hifi_eform_splits.json", "experiment", "eV/atom", "formation energy",
        _EFORM_MEANING["e_form_exp"], None,
        (Yardstick("e_form_r2scan", "r2SCAN"), Yardstick("e_form_gga_mp", "MP GGA/GGA+U"),
         Yardstick("e_form_pbe", "PBE labels (e_form_pbe)", in_mp_gap=True),
         Yardstick("e_form_exp_wang", "second measurement (Wang et al. 2021)"))),
    "gap_exp": HigherFidelityTarget(
        "gap_exp", "exp_gap.jsonl.gz", "exp_gap_splits.json", "experiment", "eV", "band gap",
        ("measured band gap of a non-metal (optical or fundamental, as compiled by Borlido et al. 2019/2020 "
         "in the revision of Grossmann et al.); every crystal in the file is a non-metal"), 0.0,
        (Yardstick("gap_hse06_b", "HSE06"), Yardstick("gap_mbj_b", "TB-mBJ"), Yardstick("gap_scan_b", "SCAN"),
         Yardstick("gap_pbe_b", "PBE"), Yardstick("gap_gw_b", "QSGW"))),
}


def target_info(column: str) -> HigherFidelityTarget:
    """The registry entry of a target column; an error listing the known ones."""
    try:
        return TARGETS[column]
    except KeyError:
        raise ValueError(f"unknown target {column!r}; known: {sorted(TARGETS)}") from None


def read_columns(path: str | Path, columns: set[str] | None = None, id_key: str = "mat_id") -> dict[str, dict]:
    """``{id: {column: value}}`` of a JSON-lines file, structures left unparsed (fast: for joins and yardsticks)."""
    path = Path(path)
    rows: dict[str, dict] = {}
    try:
        with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}, line {lineno}: not JSON ({exc.msg})") from None
                if id_key not in record:
                    raise DataError(f"{path}, line {lineno}: no {id_key!r} field")
                rows[str(record[id_key])] = {k: v for k, v in record.items()
                                             if k != "structure" and (columns is None or k in columns)}
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return rows


def _value(row: dict | None, column: str) -> float:
    v = None if row is None else row.get(column)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else np.nan


def yardstick_values(data_dir: str | Path, target: str, ids: list[str]) -> dict[str, np.ndarray]:
    """Each yardstick's value for ``ids`` (NaN where that column is unknown for a crystal), plus the target."""
    info = target_info(target)
    data_dir = Path(data_dir)
    own = read_columns(data_dir / info.file, {info.column} | {y.column for y in info.yardsticks})
    joined = {y.column for y in info.yardsticks if y.in_mp_gap}
    mp = read_columns(data_dir / "mp_gap.jsonl.gz", joined) if joined else {}
    out = {info.column: np.array([_value(own.get(i), info.column) for i in ids])}
    for y in info.yardsticks:
        source = mp if y.in_mp_gap else own
        out[y.column] = np.array([_value(source.get(i), y.column) for i in ids])
    return out


def yardstick_table(target: str, values: dict[str, np.ndarray], predictions: dict[str, np.ndarray] | None = None
                    ) -> list[dict]:
    """Rows ``{what, column, n, mae, mae_<model>...}``: each yardstick's MAE against the target on the
    crystals where it is known (``values`` from :func:`yardstick_values`), and each model's MAE
    (``predictions``: name -> values in the same order) on exactly those crystals, so a model and a
    functional are compared like for like."""
    info = target_info(target)
    y = values[info.column]
    rows = []
    for ys in info.yardsticks:
        known = np.isfinite(values[ys.column]) & np.isfinite(y)
        row = {"what": ys.label, "column": ys.column, "n": int(known.sum()),
               "mae": float(np.abs(values[ys.column][known] - y[known]).mean()) if known.any() else None}
        for name, pred in (predictions or {}).items():
            pred = np.asarray(pred, dtype=float)
            row[f"mae_{name}"] = float(np.abs(pred[known] - y[known]).mean()) if known.any() else None
        rows.append(row)
    return rows
