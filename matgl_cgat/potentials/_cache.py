"""On-disk caches of a potential's energies: what an interrupted labelling run resumes from.

Labelling the 35,592 shared crystals with a universal potential takes CPU hours, so every computed
energy is kept, keyed by the potential's identity, the way it was computed (static or the relaxation
settings) and each structure's own content (a record whose structure changed is recomputed, not
served stale). The store is an append-only JSON-lines file, flushed and synced after each batch: an
interruption loses at most the batch in flight. A torn last line (the process killed mid-write) is
reported and its structure recomputed; any other unreadable line is an error naming the file and
line, never skipped. Elemental references are one small JSON file per potential, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from matgl_cgat._io import atomic_write_text

ENV_VAR = "MATGL_CGAT_CACHE"


def default_cache_dir() -> Path:
    """``$MATGL_CGAT_CACHE/potentials``, else ``~/.cache/matgl_cgat/potentials``."""
    root = os.environ.get(ENV_VAR)
    return (Path(root) if root else Path.home() / ".cache" / "matgl_cgat") / "potentials"


def structure_digest(structure) -> str:
    """A digest of a structure's content (cell, species, fractional positions, rounded to 1e-6)."""
    payload = {
        "lattice": [[round(float(x), 6) for x in row] for row in structure.lattice.matrix],
        "species": [str(site.specie) for site in structure],
        "frac": [[round(float(x) % 1.0, 6) % 1.0 for x in site.frac_coords] for site in structure],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _slug(text: str) -> str:
    name = "".join(c if c.isalnum() or c in "-._" else "_" for c in text.split("|")[0])[:60]
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


class EnergyCache:
    """Computed energies of one potential in one mode (static or a relaxation's settings).

    ``get(id, digest)`` returns ``{"energy": eV, ...}`` or ``{"error": why}`` for a structure seen before
    with the same content, else None; ``add(rows)`` appends and syncs.
    """

    def __init__(self, folder: str | Path, identity: str, mode: str):
        self.folder = Path(folder)
        self.key = f"{identity}||{mode}"
        self.path = self.folder / f"energies-{_slug(self.key)}.jsonl"
        self._rows: dict[tuple[str, str], dict] = {}
        self.torn_lines = 0
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        text = self.path.read_text()
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError:
                if number == len(lines) and not text.endswith("\n"):
                    self.torn_lines += 1  # killed mid-write: that structure is computed again
                    warnings.warn(f"{self.path}: line {number} was cut off by an interrupted run; its structure "
                                  "will be computed again", UserWarning, stacklevel=3)
                    continue
                raise ValueError(f"{self.path}, line {number}: not a JSON record; the cache is damaged "
                                 "(delete the file to recompute)") from None
            if number == 1:
                if row.get("cache") != self.key:
                    raise ValueError(f"{self.path}: holds energies of {row.get('cache')!r}, not {self.key!r}")
                continue
            self._rows[(row["id"], row["digest"])] = row
        if self.torn_lines:  # rewrite without the torn line so later appends start on a fresh line
            keep = lines[:-1]
            if keep:
                atomic_write_text(self.path, "\n".join(keep) + "\n")
            else:  # the header itself was cut off: start the file anew (the next add writes the header)
                self.path.unlink()
        elif text and not text.endswith("\n"):  # a whole last record without its newline: end the line
            atomic_write_text(self.path, text + "\n")  # before anything is appended to it

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, rid: str, digest: str) -> dict | None:
        return self._rows.get((rid, digest))

    def add(self, rows: list[dict]) -> None:
        if not rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        with open(self.path, "a") as f:
            if new:
                f.write(json.dumps({"cache": self.key}) + "\n")
            for row in rows:
                f.write(json.dumps(row) + "\n")
                self._rows[(row["id"], row["digest"])] = row
            f.flush()
            os.fsync(f.fileno())


class ReferenceCache:
    """Elemental reference energies of one potential, one JSON file written atomically per update."""

    def __init__(self, folder: str | Path, identity: str, mode: str):
        self.folder = Path(folder)
        self.key = f"{identity}||{mode}"
        self.path = self.folder / f"references-{_slug(self.key)}.json"
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except ValueError:
                raise ValueError(f"{self.path}: not JSON; the reference cache is damaged (delete it to "
                                 "recompute)") from None
            if data.get("cache") != self.key:
                raise ValueError(f"{self.path}: holds references of {data.get('cache')!r}, not {self.key!r}")
            self.entries = data["elements"]

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"cache": self.key, "elements": self.entries}, indent=1))
