"""One call from "a data file and a target" to train/val/test datasets: what the CLI commands share.

Splits come from a ``splits.json`` (given, or the one beside the data file, as for the shared
mp_gap set) or, when there is none, from a seeded random 80/10/10 split, and the result says which.
"""

from __future__ import annotations

from pathlib import Path

from ._dataset import load_dataset
from ._errors import DataError
from ._paths import default_data_dir
from ._splits import Splits, nested_subsets, random_split, split_from_file


def prepare_splits(target: str, data: str | Path | None = None, *, splits: str | Path | None = None,
                   split_key: str | None = None, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                   max_train: int | None = None, cache_dir: str | Path | None = None, converter=None,
                   progress: bool = True) -> Splits:
    """:class:`Splits` (``train``, ``val``, ``test``) for ``target``, with ``source`` and ``split`` descriptions.

    Args:
        data: a data file or folder for :func:`load_dataset`, or a folder holding one JSON-lines file
            (such as ``mp_gap/``); default: the shared ``mp_gap.jsonl.gz``.
        splits: a ``splits.json``; default: ``splits.json`` beside ``data`` if present, else random.
        split_key: the entry of ``splits`` to use (default: ``target``).
        max_train: keep a seeded random subset of this many training structures.
    """
    if data is None:
        folder = default_data_dir()
        if folder is None:
            raise FileNotFoundError("no data given and the shared mp_gap data was not found; pass a data file "
                                    "(or set MATGL_CGAT_DATA to the mp_gap folder)")
        data = folder / "mp_gap.jsonl.gz"
    data = Path(data)
    if data.is_dir() and not (data / "id_prop.csv").is_file():
        lines = sorted(p for p in data.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))
        if len(lines) == 1:  # a dataset folder like mp_gap/: its one JSON-lines file, splits.json beside it
            data = lines[0]
    if splits is None and data.is_file() and (data.parent / "splits.json").is_file():
        splits = data.parent / "splits.json"
    ds = load_dataset(data, target, cache_dir=cache_dir, converter=converter, progress=progress)
    if splits is not None:
        key = split_key or target
        parts = split_from_file(ds, splits, key)
        how = f"{Path(splits).name}[{key!r}]"
    else:
        train, val, test = random_split(ds, fractions, seed=seed)
        parts = Splits(train, val, test)
        how = f"random {'/'.join(f'{f:g}' for f in fractions)} split, seed {seed}"
    if len(parts.train) == 0:
        raise DataError(f"{data}: the training split for {target!r} is empty")
    if max_train is not None and 0 < max_train < len(parts.train):
        parts.train = parts.train.subset(nested_subsets(len(parts.train), [max_train], seed=seed)[0])
        how += f", first {max_train} training structures of seed {seed}"
    parts.source, parts.split, parts.skipped = str(data), how, len(ds.skipped)
    return parts
