"""Train/validation/test splits and nested training subsets for learning curves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import DataError


@dataclass
class Splits:
    """Train / validation / test datasets of one target, and where they came from.

    Attributes:
        train, val, test: the datasets (``val`` may be None).
        source: the data file or folder; split: how the split was made (e.g. ``splits.json['gap_hse']``).
        missing: ids of the split file absent from the data, per part (``allow_missing=True``).
        skipped: records the reader skipped.
    ``splits["train"]`` works too (the dict these functions returned before).
    """

    train: Any
    val: Any
    test: Any
    source: str | None = None
    split: str | None = None
    missing: dict[str, list[str]] = field(default_factory=dict)
    skipped: int = 0

    def __getitem__(self, name: str):
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default=None):
        return getattr(self, name, default)

    def keys(self) -> list[str]:
        return ["train", "val", "test", "source", "split", "missing", "skipped"]

    def __iter__(self):
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    @classmethod
    def of(cls, parts) -> Splits:
        """A ``Splits`` from a ``Splits`` or a mapping with ``train``, ``test`` and optionally ``val``."""
        if isinstance(parts, cls):
            return parts
        return cls(parts["train"], parts.get("val"), parts["test"], source=parts.get("source"),
                   split=parts.get("split"), missing=parts.get("missing") or {}, skipped=parts.get("skipped", 0))


def load_splits(path: str | Path, key: str) -> dict[str, list[str]]:
    """The id lists (``train``, ``val``, ``test``) of ``key`` in a ``splits.json`` file."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read splits ({exc})") from None
    if not isinstance(splits, dict) or key not in splits:
        raise DataError(f"{path}: no split {key!r}; available: {sorted(splits) if isinstance(splits, dict) else 'none'}")
    if not isinstance(splits[key], dict) or not all(isinstance(v, list) for v in splits[key].values()):
        raise DataError(f"{path}: split {key!r} must map part names (train, val, test) to lists of ids")
    parts = {part: [str(i) for i in ids] for part, ids in splits[key].items()}
    seen: dict[str, str] = {}
    for part, ids in parts.items():  # a repeated id weighs a crystal twice; one in two parts leaks test into training
        for rid in ids:
            if rid in seen:
                where = f"twice in {part!r}" if seen[rid] == part else f"in both {seen[rid]!r} and {part!r}"
                raise DataError(f"{path}: split {key!r}: id {rid!r} is {where}; the parts must be disjoint and "
                                "each id listed once")
            seen[rid] = part
    return parts


def split_from_file(dataset, path: str | Path, key: str, *, allow_missing: bool = False) -> Splits:
    """Subsets of ``dataset`` for the fixed splits in a ``splits.json`` file (shared layout).

    ``{key: {"train": [ids], "val": [ids], "test": [ids]}}``. Ids of the split that the dataset
    does not hold raise :class:`DataError` (they were skipped or belong to other data) unless
    ``allow_missing``; then they are reported in ``missing``.
    """
    out: dict = {"missing": {}, "val": None}
    for part, ids in load_splits(path, key).items():
        positions, missing = dataset.positions_of(ids)
        if missing and not allow_missing:
            raise DataError(
                f"{path}: {len(missing)} of {len(ids)} {key}/{part} ids are not in the dataset "
                f"(e.g. {missing[:3]}); pass allow_missing=True to use the rest"
            )
        out[part] = dataset.subset(positions)
        out["missing"][part] = missing
    unknown = sorted(set(out) - {"train", "val", "test", "missing"})
    if unknown or "train" not in out or "test" not in out:
        raise DataError(f"{path}: split {key!r} must have 'train' and 'test' (and 'val') id lists, got "
                        f"{sorted(set(out) - {'missing'})}")
    return Splits(out["train"], out["val"], out["test"], source=None, split=f"{Path(path).name}[{key!r}]",
                  missing=out["missing"])


def split_per_target(dataset, path: str | Path, keys: Sequence[str]) -> Splits:
    """Splits of a several-label dataset whose ``splits.json`` draws one split per label (``keys``).

    Each part keeps each label only for the ids of that label's own part (NaN elsewhere, see
    :meth:`GraphDataset.keeping_labels`); a crystal in the PBE training split and the HSE test split
    is in both parts, with its PBE label in one and its HSE label in the other. So every label is
    trained and tested exactly where a single-label model of it would be.
    """
    lists = {key: load_splits(path, key) for key in keys}
    parts = {part: dataset.keeping_labels({key: lists[key].get(part, []) for key in keys})
             for part in ("train", "val", "test")}
    return Splits(parts["train"], parts["val"], parts["test"], source=None,
                  split=f"{Path(path).name}, per label {list(keys)}")


def random_split(dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> list:
    """Seeded random split into parts of the given fractions (the last part takes the remainder)."""
    fractions = np.asarray(fractions, dtype=float)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions.tolist()}")
    order = np.random.default_rng(seed).permutation(len(dataset))
    return [dataset.subset(part) for part in np.split(order, _cuts(len(dataset), fractions))]


def _cuts(n: int, fractions) -> np.ndarray:
    return np.floor(np.cumsum(np.asarray(fractions, dtype=float))[:-1] * n + 0.5).astype(int)  # half up, not to even


def split_sizes(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> list[int]:
    """The part sizes :func:`random_split` gives ``n`` items (the seed only changes which items)."""
    return np.diff(np.concatenate(([0], _cuts(n, fractions), [n]))).astype(int).tolist()


def nested_subsets(n: int, sizes: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    """Index sets of the given sizes, each inside every larger one (prefixes of one permutation)."""
    sizes = sorted(int(s) for s in sizes)
    if sizes and (sizes[0] < 1 or sizes[-1] > n):
        raise ValueError(f"subset sizes must lie in 1..{n}, got {sizes}")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[:s]) for s in sizes]
