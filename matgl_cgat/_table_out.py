"""Screening tables written as they are computed, resumable after an interruption.

A screen of a million crystals runs for hours; stopping it (a job's time limit, a cluster's
pre-emption) must cost only the batch in flight. Rows are appended to ``<out>.partial`` and flushed
after every batch; the finished table replaces ``<out>`` in one rename, so a reader sees no table or
the whole one. The next run of the same command finds the partial file, reads the ids already there
and predicts only the rest. A partial file of another command (other models, other columns) is
refused rather than mixed in, and a finished table the user already has is never overwritten unless
asked to.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path

from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import DataError

#: What ``--out`` can write: suffix -> (format, how the partial file stores rows).
OUT_FORMATS = {".csv": ("csv", "csv"), ".jsonl": ("jsonl", "jsonl"), ".json": ("json", "jsonl"),
               ".parquet": ("parquet", "csv")}


def out_format(path: Path) -> str:
    """The format ``path``'s suffix asks for, or a one-line error naming the choices."""
    fmt = OUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {path}: write {', '.join(OUT_FORMATS)} (or leave out --out for a table)")
    if fmt[0] == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(f"--out {path}: Parquet needs pyarrow (pip install pyarrow); or write .csv / .jsonl"
                             ) from None
    return fmt[0]


class StreamingTable:
    """Rows appended to ``<path>.partial`` batch by batch, the table moved to ``path`` by :meth:`finish`.

    Args:
        path: the finished table (.csv, .jsonl, .json or .parquet).
        columns: CSV columns (flat rows), fixed before the first row so that every batch agrees.
        signature: what made the rows (models, inputs, options): a partial file is resumed only by the
            same command.
        overwrite: replace an existing finished table at ``path`` (otherwise an error).
    """

    def __init__(self, path: str | Path, columns: list[str], signature: dict, overwrite: bool = False):
        self.path = Path(path)
        self.format = out_format(self.path)
        self.store = OUT_FORMATS[self.path.suffix.lower()][1]
        self.columns = list(columns)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.meta = self.path.with_name(self.path.name + ".partial.json")
        if self.path.is_dir():
            raise ValueError(f"--out {self.path}: is a folder; give a file name")
        if self.path.exists() and not overwrite:
            raise ValueError(f"--out {self.path}: exists; choose another name or pass --overwrite to replace it")
        if not self.path.parent.is_dir():
            raise ValueError(f"--out {self.path}: the folder {self.path.parent} does not exist")
        self.signature = {"columns": self.columns, **signature}
        self.done: set[str] = set()
        self.resumed = 0
        if self.partial.exists():
            self._resume()
        else:
            atomic_write_text(self.meta, json.dumps(self.signature, indent=1))
            with open(self.partial, "w", newline="") as f:
                if self.store == "csv":
                    csv.DictWriter(f, fieldnames=self.columns).writeheader()

    def _resume(self) -> None:
        try:
            before = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            before = None
        if before != json.loads(json.dumps(self.signature)):
            raise ValueError(f"{self.partial}: an unfinished table of another command (other models, inputs or "
                             "columns); rerun that command to finish it, or delete the file to start afresh")
        with open(self.partial, "rb+") as f:  # a row torn by the interruption is dropped, then redone
            data = f.read()
            cut = data.rfind(b"\n") + 1
            if cut != len(data):
                f.truncate(cut)
        with open(self.partial, newline="") as f:
            if self.store == "csv":
                reader = csv.DictReader(f)
                if reader.fieldnames != self.columns:
                    raise DataError(f"{self.partial}: its header is not this command's columns; delete it to start "
                                    "afresh")
                self.done = {row["id"] for row in reader}
            else:
                self.done = {json.loads(line)["id"] for line in f if line.strip()}
        self.resumed = len(self.done)

    def write(self, flat_rows: Iterable[dict], json_rows: Iterable[dict]) -> None:
        """Append one batch (flat rows for CSV-stored formats, nested ones for JSON) and flush it to disk."""
        with open(self.partial, "a", newline="") as f:
            if self.store == "csv":
                writer = csv.DictWriter(f, fieldnames=self.columns, restval="", extrasaction="raise")
                for row in flat_rows:
                    writer.writerow(row)
                    self.done.add(str(row["id"]))
            else:
                for row in json_rows:
                    f.write(json.dumps(row) + "\n")
                    self.done.add(str(row["id"]))
            f.flush()
            os.fsync(f.fileno())

    def discard(self) -> None:
        """Remove the partial table (nothing was predicted): no empty table is published."""
        self.partial.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)

    def finish(self, units: dict) -> int:
        """Move the finished table to ``path`` (converted for .json and .parquet); returns its row count."""
        if self.format in ("csv", "jsonl"):
            os.replace(self.partial, self.path)
        elif self.format == "json":
            with open(self.partial) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            atomic_write_text(self.path, json.dumps({"units": units, "predictions": rows}, indent=2))
            self.partial.unlink()
        else:
            import pandas as pd

            from matgl_cgat._io import atomic_path

            frame = pd.read_csv(self.partial, dtype={"id": str}, keep_default_na=False, na_values=[""])
            with atomic_path(self.path) as tmp:
                frame.to_parquet(tmp, index=False)
            self.partial.unlink()
        self.meta.unlink(missing_ok=True)
        return len(self.done)
