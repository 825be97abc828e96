"""One call from "a data file and a target" to train/val/test datasets: what the CLI commands share.

Splits come from a ``splits.json`` (given, or the one beside the data file, as for the shared
mp_gap set) or, when there is none, from a seeded random 80/10/10 split, and the result says which.
"""

from __future__ import annotations

from pathlib import Path

from ._dataset import load_dataset
from ._errors import DataError
from ._paths import default_data_dir
from ._splits import Splits, nested_subsets, random_split, split_from_file, split_sizes


def splits_beside(data: Path) -> Path | None:
    """The splits file of a data file, found by name: ``X_splits.json`` beside ``X.jsonl.gz`` (so
    ``hifi_eform.jsonl.gz`` gets ``hifi_eform_splits.json``, not its neighbour's), else a plain
    ``splits.json`` in the same folder, else None."""
    stem = data.name
    for suffix in (".jsonl.gz", ".jsonl", ".json.bz2", ".json", ".extxyz", ".xyz"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for candidate in (data.parent / f"{stem}_splits.json", data.parent / "splits.json"):
        if candidate.is_file():
            return candidate
    return None


def model_splits(model, target: str | None = None, data: str | Path | None = None, *,
                 cache_dir: str | Path | None = None, progress: bool = True) -> tuple[str, Splits]:
    """``(target, splits)`` a single-output model was trained and tested on: its card's property (or
    ``target``), from ``data`` (a file, or a folder such as the shared mp_gap one, where r2SCAN and
    measured targets have files and splits of their own), graphs built with the model's converter."""
    from ._higher_fidelity import TARGETS

    card = getattr(model, "metadata", None) or {}
    target = target or (card.get("property") if isinstance(card, dict) else None)
    if not target:
        raise ValueError("the model card names no property; give the target")
    splits = None
    if target in TARGETS and (data is None or Path(data).is_dir()):
        folder = Path(data) if data is not None else default_data_dir()
        if folder is None:
            raise FileNotFoundError("the shared mp_gap data was not found; pass its folder "
                                    "(or set MATGL_CGAT_DATA)")
        data, splits = folder / TARGETS[target].file, folder / TARGETS[target].splits
    return target, prepare_splits(target, data, splits=splits, cache_dir=cache_dir,
                                  converter=model.graph_converter(), progress=progress)


def prepare_splits(target: str, data: str | Path | None = None, *, splits: str | Path | None = None,
                   split_key: str | None = None, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                   max_train: int | None = None, cache_dir: str | Path | None = None, converter=None,
                   progress: bool = True, need: tuple[str, ...] = ("train",)) -> Splits:
    """:class:`Splits` (``train``, ``val``, ``test``) for ``target``, with ``source`` and ``split`` descriptions.

    Args:
        data: a data file or folder for :func:`load_dataset`, or a folder holding one JSON-lines file
            (such as ``mp_gap/``); default: the shared ``mp_gap.jsonl.gz``.
        splits: a ``splits.json``; default: the one beside ``data`` (:func:`splits_beside`), else random.
        split_key: the entry of ``splits`` to use (default: ``target``).
        max_train: keep a seeded random subset of this many training structures.
        need: the parts that must not be empty (default: ``train``): ``("train", "val", "test")``
            for training and testing (``val`` may still be absent from a ``splits.json``, not empty),
            just the evaluated split for ``evaluate``. An empty one is a :class:`DataError` giving every
            part's size and what to do, raised here, before any training (a random 80/10/10 split of
            fewer than ~10 records leaves validation or test empty).
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
    if splits is None and data.is_file():
        splits = splits_beside(data)
    ds = load_dataset(data, target, cache_dir=cache_dir, converter=converter, progress=progress)
    if splits is not None:
        key = split_key or target
        parts = split_from_file(ds, splits, key)
        how = f"{Path(splits).name}[{key!r}]"
    else:
        train, val, test = random_split(ds, fractions, seed=seed)
        parts = Splits(train, val, test)
        how = f"random {'/'.join(f'{f:g}' for f in fractions)} split, seed {seed}"
    if splits is None:
        parts_needed = [i for i, name in enumerate(("train", "val", "test")) if name in need]
        enough = next((n for n in range(1, 10_000) if all(split_sizes(n, fractions)[i] > 0 for i in parts_needed)),
                      None)
        advice = (f"a random {'/'.join(f'{f:g}' for f in fractions)} split needs at least {enough} records to fill "
                  "every part needed here" if enough else "a part has a zero fraction") + \
            ": give more records, or fixed splits with --splits (a splits.json)"
    else:
        advice = "put ids into the empty part of the splits file, or give data holding them"
    check_parts(parts, need, f"{data}: {target!r}, {how}", advice)
    if max_train is not None and 0 < max_train < len(parts.train):
        parts.train = parts.train.subset(nested_subsets(len(parts.train), [max_train], seed=seed)[0])
        how += f", first {max_train} training structures of seed {seed}"
    parts.source, parts.split, parts.skipped = str(data), how, len(ds.skipped)
    return parts


def check_parts(parts: Splits, need, where: str, advice: str = "") -> None:
    """:class:`DataError` if a needed part is empty (a ``val`` absent from a splits file is allowed)."""
    sizes = {name: (len(parts[name]) if parts[name] is not None else None) for name in ("train", "val", "test")}
    empty = [name for name in dict.fromkeys(need) if sizes.get(name) == 0]
    if not empty:
        return
    counts = ", ".join(f"{k} {'none' if v is None else v}" for k, v in sizes.items())
    raise DataError(f"{where}: the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
                    f"({counts})" + (f"; {advice}" if advice else ""))
