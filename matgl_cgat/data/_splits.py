"""Train/validation/test splits and nested training subsets for learning curves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._errors import DataError


def load_splits(path: str | Path, key: str) -> dict[str, list[str]]:
    """The id lists (``train``, ``val``, ``test``) of ``key`` in a ``splits.json`` file."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read splits ({exc})") from None
    if key not in splits:
        raise DataError(f"{path}: no split {key!r}; available: {sorted(splits)}")
    return {part: [str(i) for i in ids] for part, ids in splits[key].items()}


def split_from_file(dataset, path: str | Path, key: str, *, allow_missing: bool = False) -> dict:
    """Subsets of ``dataset`` for the fixed splits in a ``splits.json`` file (shared layout).

    ``{key: {"train": [ids], "val": [ids], "test": [ids]}}``. Ids of the split that the dataset
    does not hold raise :class:`DataError` (they were skipped or belong to other data) unless
    ``allow_missing``; then they are reported in the returned ``"missing"`` entry.
    """
    out: dict = {"missing": {}}
    for part, ids in load_splits(path, key).items():
        positions, missing = dataset.positions_of(ids)
        if missing and not allow_missing:
            raise DataError(
                f"{path}: {len(missing)} of {len(ids)} {key}/{part} ids are not in the dataset "
                f"(e.g. {missing[:3]}); pass allow_missing=True to use the rest"
            )
        out[part] = dataset.subset(positions)
        out["missing"][part] = missing
    return out


def random_split(dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> list:
    """Seeded random split into parts of the given fractions (the last part takes the remainder)."""
    fractions = np.asarray(fractions, dtype=float)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions.tolist()}")
    order = np.random.default_rng(seed).permutation(len(dataset))
    cuts = np.floor(np.cumsum(fractions)[:-1] * len(dataset) + 0.5).astype(int)  # half up, not to even
    return [dataset.subset(part) for part in np.split(order, cuts)]


def nested_subsets(n: int, sizes: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    """Index sets of the given sizes, each inside every larger one (prefixes of one permutation)."""
    sizes = sorted(int(s) for s in sizes)
    if sizes and (sizes[0] < 1 or sizes[-1] > n):
        raise ValueError(f"subset sizes must lie in 1..{n}, got {sizes}")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[:s]) for s in sizes]
