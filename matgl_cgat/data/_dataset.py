"""``load_dataset``: any supported source -> CGAT graphs, converted once in parallel, cached on disk.

The parent process streams raw records from the source and groups them into shards; worker
processes parse, convert and write each shard (atomically) to the cache. The resulting
:class:`GraphDataset` keeps only ids and labels in memory and loads graph shards on demand, so it
works for datasets larger than memory and with MatGL's ``MGLDataLoader``/``collate_fn_graph``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import tempfile
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matgl_cgat.graph import graph_fields

from ._cache import atomic_write_text, cache_key, load_shard_graphs, read_shard_meta, write_shard
from ._errors import DataError
from ._sources import (
    Item,
    LabelMissing,
    ReadSpec,
    check_objects,
    detect_format,
    fingerprint_files,
    fingerprint_objects,
    iter_items,
    materialise,
    object_items,
    source_files,
)

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")


def load_dataset(
    source: str | Path | Sequence,
    target: str | Sequence[str],
    *,
    labels: Sequence[float] | dict[str, Sequence[float]] | None = None,
    ids: Sequence[str] | None = None,
    converter=None,
    cache_dir: str | Path | None = None,
    on_error: str = "raise",
    workers: int | None = None,
    shard_size: int = 1000,
    require: str = "all",
    format: str | None = None,  # noqa: A002 - the natural name for users
    id_key: str = "mat_id",
    structure_key: str = "structure",
    progress: bool = True,
    max_cached_shards: int | None = None,
) -> GraphDataset:
    """Load crystal data from a file, folder or Python objects as CGAT graphs.

    Args:
        source: a JSON-lines file (``.jsonl`` / ``.jsonl.gz``; a pymatgen structure dict and label
            fields per line, the layout of ``mp_gap.jsonl.gz``); an Alexandria ``.json.bz2`` or
            ``.json`` file (``{"entries": [ComputedStructureEntry dicts]}``) or a folder of them; a
            folder of CIF files with ``id_prop.csv`` (CGCNN/ALIGNN convention; an optional header row
            names the value columns); an ASE extended-XYZ file (labels and ``id`` in each frame's
            info); or a list of pymatgen ``Structure``/ASE ``Atoms`` with ``labels``.
        target: label name, or several for multi-fidelity work (all kept, keyed by id). The first is
            the one the dataset returns to MatGL's collate function; see :meth:`GraphDataset.with_target`.
            For Alexandria, names are looked up in each entry's ``data`` (e.g. ``e_form``,
            ``e_above_hull``, ``band_gap_ind``); ``energy_per_atom`` is the entry energy / sites.
        labels: with in-memory structures: a sequence (one target) or ``{target: sequence}``. These
            lists are explicit, so a label that is None, NaN, infinite or not a number raises
            :class:`DataError` naming the structure (with ``require="any"`` None/NaN marks a missing
            target instead); so does an item that is not a ``Structure``/``IStructure``/``Atoms``.
        ids: with in-memory structures: record ids (default ``"0"``, ``"1"``, ...).
        converter: graph converter (default ``CGATGraphConverter()``); all its settings key the cache.
        cache_dir: folder for the graph cache; a second load with the same source and settings reuses
            it, and an interrupted conversion resumes. Default: a temporary folder removed with the
            dataset.
        on_error: "raise" (default) raises :class:`DataError` naming the file and record for a
            malformed, disordered or unembeddable record; "skip" records it in ``ds.skipped``.
            Records of files with missing or non-finite labels are always skipped and listed there
            (in id_prop.csv an empty field or ``nan``/``NA``/``n/a``/``none``/``null``/``?`` is
            missing; other text is a malformed record).
        workers: conversion processes (default: all cores).
        shard_size: records per cache shard.
        require: "all" (default) keeps a record only if every target is present; "any" keeps it if
            at least one is (missing ones are NaN).
        format: force a format ("jsonl", "alexandria", "cif", "extxyz") instead of guessing.
        id_key, structure_key: field names in JSON records (Alexandria: the id is ``data[id_key]`` or
            the ``entry_id``).
        progress: show a progress bar.
        max_cached_shards: graph shards kept in memory at once (default: all); set it for datasets
            larger than memory.

    Raises:
        DataError: bad input (the message names the file, the record and the problem), an empty
            result, or duplicate ids.
    """
    from matgl_cgat.graph import CGATGraphConverter

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if require not in ("all", "any"):
        raise ValueError(f"require must be 'all' or 'any', got {require!r}")
    targets = (target,) if isinstance(target, str) else tuple(target)
    if not targets:
        raise ValueError("give at least one target")
    converter = converter or CGATGraphConverter()
    spec = ReadSpec(targets, id_key=id_key, structure_key=structure_key, require=require)

    if isinstance(source, (str, Path)):
        path = Path(source)
        fmt = format or detect_format(path) if path.exists() else None
        if fmt is None:
            raise DataError(f"{path}: no such file or folder")
        items: Iterable[Item] = iter_items(path, fmt)
        identity: Any = {"files": fingerprint_files(source_files(path, fmt), fmt), "format": fmt}
        name = str(path)
    else:
        objects = list(source)
        if labels is None:
            raise ValueError("in-memory structures need labels=")
        if isinstance(labels, dict):
            label_map = {t: list(v) for t, v in labels.items()}
        elif len(targets) > 1:
            raise ValueError(f"several targets {list(targets)}: give labels as {{target: sequence}}")
        else:
            label_map = {targets[0]: list(labels)}
        for t in targets:
            if t not in label_map:
                raise ValueError(f"labels has no {t!r}; it has {sorted(label_map)}")
            if len(label_map[t]) != len(objects):
                raise DataError(f"{len(label_map[t])} labels for {t!r} but {len(objects)} structures")
        ids = [str(i) for i in (ids if ids is not None else range(len(objects)))]
        if len(ids) != len(objects):
            raise DataError(f"{len(ids)} ids for {len(objects)} structures")
        # explicit lists: a wrong type or a NaN/None/non-numeric label is an error naming the structure,
        # raised here, before hashing or converting anything (nothing is dropped silently)
        label_map = check_objects(objects, {t: label_map[t] for t in targets}, ids, require)
        items = object_items(objects, label_map, ids)
        identity = {"objects": fingerprint_objects(objects, label_map, ids)}
        name = f"{len(objects)} in-memory structures"

    key = cache_key(
        {
            "source": identity,
            "targets": targets,
            "require": require,
            "id_key": id_key,
            "structure_key": structure_key,
            "on_error": on_error,
            "shard_size": shard_size,
            "converter": converter.settings() if hasattr(converter, "settings") else repr(vars(converter)),
        }
    )
    keepalive = None
    if cache_dir is None:
        keepalive = tempfile.TemporaryDirectory(prefix="matgl_cgat_graphs_")
        root = Path(keepalive.name)
    else:
        root = Path(cache_dir) / key
    root.mkdir(parents=True, exist_ok=True)
    index_path = root / "index.json"
    if index_path.is_file() and not _shards_intact(root, index_path):
        index_path.unlink()  # the intact shards are reused below; the damaged ones are converted again
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        logger.info("reusing graph cache %s", root)
    else:
        index = _convert(root, items, spec, converter, on_error, workers or os.cpu_count() or 1, shard_size, progress)
        index["source"] = name
        index["converter"] = converter.settings() if hasattr(converter, "settings") else None
        index["key"] = key
        _check(index, name)
        atomic_write_text(index_path, json.dumps(index))
    _check(index, name)
    return GraphDataset(root, index, store=_ShardStore(root, max_cached_shards), keepalive=keepalive)


def _shards_intact(root: Path, index_path: Path) -> bool:
    """Whether every shard of a finished cache is still whole; a warning names those that are not."""
    try:
        counts = json.loads(index_path.read_text())["counts"]
    except (OSError, ValueError, KeyError, TypeError):
        warnings.warn(f"{index_path}: unreadable; rebuilding the graph cache index", UserWarning, stacklevel=3)
        return False
    damaged = [i for i in range(len(counts)) if read_shard_meta(root, i) is None]
    if damaged:
        warnings.warn(f"graph cache {root}: shard(s) {damaged} damaged or missing; converting them again",
                      UserWarning, stacklevel=3)
    return not damaged


def _check(index: dict, name: str) -> None:
    if not index["ids"]:
        reasons = Counter(reason.split(":")[-1].strip()[:80] for _, reason in index["skipped"])
        raise DataError(
            f"{name}: no usable records ({len(index['skipped'])} skipped"
            + (f"; most common reasons: {dict(reasons.most_common(3))}" if reasons else "")
            + ")"
        )
    seen: dict[str, str] = {}
    for rid, loc in zip(index["ids"], index["locations"]):
        if rid in seen:
            raise DataError(f"{name}: duplicate id {rid!r} at {seen[rid]} and {loc}")
        seen[rid] = loc


def _shards(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _convert(root, items, spec, converter, on_error, workers, shard_size, progress) -> dict:
    """Convert every shard not already in ``root`` (resume) and gather the shard metadata in order."""
    from tqdm.auto import tqdm

    metas: dict[int, dict] = {}
    bar = tqdm(unit=" structures", desc="graphs", disable=not progress)
    pool = None
    pending: dict = {}
    try:
        for index, chunk in enumerate(_shards(items, shard_size)):
            done = read_shard_meta(root, index)
            if done is not None and done.get("count") == len(chunk):
                metas[index] = done
                bar.update(len(chunk))
                continue
            job = (str(root), index, chunk, spec, converter, on_error)
            if workers <= 1 or (index == 0 and pool is None and len(chunk) < shard_size):
                metas[index] = _convert_shard(job)
                bar.update(len(chunk))
                continue
            if pool is None:
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context())
            while len(pending) >= 2 * workers:
                _collect(pending, metas, bar, wait(pending, return_when=FIRST_COMPLETED).done)
            pending[pool.submit(_convert_shard, job)] = index
        while pending:
            _collect(pending, metas, bar, wait(pending, return_when=FIRST_COMPLETED).done)
    except BaseException:
        for f in pending:
            f.cancel()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    ordered = [metas[i] for i in range(len(metas))]
    targets = list(spec.targets)
    return {
        "targets": targets,
        "counts": [m["count_kept"] for m in ordered],
        "ids": [rid for m in ordered for rid in m["ids"]],
        "locations": [loc for m in ordered for loc in m["locations"]],
        "labels": {t: [v for m in ordered for v in m["labels"][t]] for t in targets},
        "num_nodes": [n for m in ordered for n in m["num_nodes"]],
        "skipped": [s for m in ordered for s in m["skipped"]],
    }


def _mp_context():
    """Fork where the OS has it (as PyTorch's own data-loader workers do): no re-import of the user's
    script, so load_dataset works from scripts without a ``__main__`` guard; spawn elsewhere."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _collect(pending: dict, metas: dict, bar, done) -> None:
    for future in done:
        index = pending.pop(future)
        metas[index] = future.result()  # re-raises a worker's DataError here
        bar.update(metas[index]["count"])


def _convert_shard(job) -> dict:
    """Worker: parse and convert one shard of raw items, write it to the cache, return its metadata."""
    root, index, items, spec, converter, on_error = job
    torch.set_num_threads(1)
    graphs, lattices, ids, locations, num_nodes, skipped = [], [], [], [], [], []
    values: dict[str, list] = {t: [] for t in spec.targets}
    for item in items:
        try:
            rid, obj, labels = materialise(item, spec)
        except LabelMissing as exc:
            skipped.append([exc.record_id if exc.record_id is not None else item.location, f"{exc} ({item.location})"])
            continue
        except DataError as exc:
            if on_error == "raise":
                raise
            skipped.append([item.location, str(exc)])
            continue
        try:
            g, lat, _ = converter.get_graph(obj)
        except (ValueError, TypeError, RuntimeError) as exc:
            message = f"{item.location} ({rid}): {exc}"
            if on_error == "raise":
                raise DataError(message) from None
            skipped.append([rid, message])
            continue
        graphs.append(g)
        lattices.append(lat[0])
        ids.append(rid)
        locations.append(item.location)
        num_nodes.append(len(graph_fields(g)["node_type"]))
        for t in spec.targets:
            v = labels[t]
            values[t].append(None if math.isnan(v) else v)
    meta = {
        "count": len(items),
        "count_kept": len(ids),
        "ids": ids,
        "locations": locations,
        "labels": values,
        "num_nodes": num_nodes,
        "skipped": skipped,
    }
    write_shard(Path(root), index, graphs, lattices, meta)
    return meta


class _ShardStore:
    """Loads graph shards on demand and keeps the most recently used ``max_shards`` in memory."""

    def __init__(self, root: Path, max_shards: int | None):
        self.root, self.max_shards = Path(root), max_shards
        self._cache: OrderedDict[int, tuple[list, torch.Tensor]] = OrderedDict()

    def get(self, shard: int) -> tuple[list, torch.Tensor]:
        if shard in self._cache:
            self._cache.move_to_end(shard)
            return self._cache[shard]
        data = load_shard_graphs(self.root, shard)
        self._cache[shard] = data
        if self.max_shards is not None:
            while len(self._cache) > self.max_shards:
                self._cache.popitem(last=False)
        return data

    def __getstate__(self):  # data-loader workers start with an empty cache
        return {"root": self.root, "max_shards": self.max_shards, "_cache": OrderedDict()}


class GraphDataset(torch.utils.data.Dataset):
    """CGAT graphs with labels, backed by cache shards; items in MatGL's ``(g, lattice, state, labels)`` form.

    Attributes:
        ids: record ids, in order.
        labels: ``{target: np.ndarray}`` (NaN where missing with ``require="any"``).
        skipped: ``(id or location, reason)`` for every record left out.
        target: the first label returned by ``__getitem__``.
        returned_targets: the labels ``__getitem__`` returns (one unless :meth:`with_targets` chose several).
    """

    def __init__(
        self,
        root: Path,
        index: dict,
        target: str | None = None,
        rows: Sequence[int] | None = None,
        store: _ShardStore | None = None,
        keepalive: Any = None,
        returned: Sequence[str] | None = None,
        label_arrays: dict[str, np.ndarray] | None = None,
    ):
        self.root = Path(root)
        self._index = index
        self._offsets = np.concatenate(([0], np.cumsum(index["counts"]))).astype(np.int64)
        total = int(self._offsets[-1])
        self._rows = np.arange(total) if rows is None else np.asarray(rows, dtype=np.int64)
        self.targets: list[str] = list(index["targets"])
        self.target = target or self.targets[0]
        if self.target not in self.targets:
            raise ValueError(f"unknown target {self.target!r}; this dataset has {self.targets}")
        self.returned_targets: tuple[str, ...] = tuple(returned) if returned else (self.target,)
        self._store = store or _ShardStore(self.root, None)
        self._keepalive = keepalive
        self._labels = label_arrays if label_arrays is not None else {
            t: np.array([np.nan if v is None else v for v in index["labels"][t]], dtype=np.float64)
            for t in self.targets
        }
        self.skipped: list[tuple[str, str]] = [tuple(s) for s in index["skipped"]]

    @property
    def cache_key(self) -> str | None:
        """Hash of the source (file identities or in-memory content), reader and converter settings."""
        return self._index.get("key")

    @property
    def ids(self) -> list[str]:
        all_ids = self._index["ids"]
        return [all_ids[r] for r in self._rows]

    @property
    def labels(self) -> dict[str, np.ndarray]:
        return {t: v[self._rows] for t, v in self._labels.items()}

    @property
    def num_nodes(self) -> np.ndarray:
        return np.asarray(self._index["num_nodes"], dtype=np.int64)[self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int):
        row = int(self._rows[i])
        shard = int(np.searchsorted(self._offsets, row, side="right") - 1)
        local = row - int(self._offsets[shard])
        graphs, lattices = self._store.get(shard)
        labels = {t: torch.tensor(self._labels[t][row], dtype=torch.float32) for t in self.returned_targets}
        return graphs[local], lattices[local : local + 1], torch.zeros(2), labels

    def subset(self, indices: Sequence[int]) -> GraphDataset:
        """A view on some items (positions in this dataset); shares the shard cache."""
        return GraphDataset(self.root, self._index, self.target, self._rows[np.asarray(indices, dtype=np.int64)],
                            self._store, self._keepalive, self.returned_targets, self._labels)

    def with_target(self, target: str) -> GraphDataset:
        """The same items returning another of the loaded targets (rows where it is NaN are dropped)."""
        keep = np.flatnonzero(~np.isnan(self._labels[target][self._rows]))
        return GraphDataset(self.root, self._index, target, self._rows[keep], self._store, self._keepalive,
                            label_arrays=self._labels)

    def with_targets(self, targets: Sequence[str]) -> GraphDataset:
        """The same items returning several loaded targets at once (NaN where missing), for a
        multi-target model; rows without any of them are dropped."""
        targets = list(targets)
        unknown = [t for t in targets if t not in self.targets]
        if not targets or unknown:
            raise ValueError(f"unknown target(s) {unknown or targets}; this dataset has {self.targets}")
        have = np.zeros(len(self._rows), dtype=bool)
        for t in targets:
            have |= ~np.isnan(self._labels[t][self._rows])
        return GraphDataset(self.root, self._index, targets[0], self._rows[np.flatnonzero(have)], self._store,
                            self._keepalive, targets, self._labels)

    def with_label(self, name: str, values: dict[str, float]) -> GraphDataset:
        """The same items returning a computed label ``name`` (``values``: id -> number), for example the
        residual of a loaded target against a universal potential (Δ-learning). Every item must have a
        finite value: a missing one is a :class:`DataError` naming the ids, never a silent drop."""
        if name in self.targets:
            raise ValueError(f"{name!r} is already a label of this dataset")
        all_ids = self._index["ids"]
        column = np.full(len(all_ids), np.nan)
        for position, rid in enumerate(all_ids):
            value = values.get(rid)
            if value is not None:
                column[position] = float(value)
        missing = [all_ids[r] for r in self._rows if not np.isfinite(column[r])]
        if missing:
            raise DataError(f"label {name!r}: no finite value for {len(missing)} of {len(self)} structures "
                            f"(first: {', '.join(missing[:5])})")
        index = {**self._index, "targets": [*self.targets, name]}
        return GraphDataset(self.root, index, name, self._rows, self._store, self._keepalive,
                            label_arrays={**self._labels, name: column})

    def keeping_labels(self, ids_per_target: dict[str, Iterable[str]]) -> GraphDataset:
        """The same items with each listed target's labels kept only for the given ids (NaN elsewhere);
        targets not listed are unchanged. Rows left without any label are dropped.

        For per-target splits: multi-fidelity data whose splits are drawn per fidelity (a crystal can be
        in the PBE training split and the HSE test split) becomes one training set holding each label
        only where its own split puts it in training.
        """
        unknown = [t for t in ids_per_target if t not in self.targets]
        if unknown:
            raise ValueError(f"unknown target(s) {unknown}; this dataset has {self.targets}")
        all_ids = self._index["ids"]
        labels = dict(self._labels)
        for t, ids in ids_per_target.items():
            wanted = set(ids)
            keep = np.array([rid in wanted for rid in all_ids], dtype=bool)
            labels[t] = np.where(keep, self._labels[t], np.nan)
        have = np.zeros(len(self._rows), dtype=bool)
        for t in self.returned_targets:
            have |= ~np.isnan(labels[t][self._rows])
        return GraphDataset(self.root, self._index, self.target, self._rows[np.flatnonzero(have)], self._store,
                            self._keepalive, self.returned_targets, labels)

    def positions_of(self, ids: Iterable[str]) -> tuple[np.ndarray, list[str]]:
        """Positions of the given ids in this dataset, and the ids that are not in it."""
        where = {rid: i for i, rid in enumerate(self.ids)}
        found, missing = [], []
        for rid in ids:
            (found.append(where[rid]) if rid in where else missing.append(rid))
        return np.asarray(found, dtype=np.int64), missing

    def shard_sampler(self, shuffle: bool = True, seed: int = 0) -> Iterator[int]:
        """Indices grouped by shard (shards and items within them shuffled): few shard loads per epoch.

        Use as ``GraphDataLoader(ds, sampler=list(ds.shard_sampler(seed=epoch)), ...)`` when the
        dataset is larger than memory.
        """
        rng = np.random.default_rng(seed)
        shard_of = np.searchsorted(self._offsets, self._rows, side="right") - 1
        shards = np.unique(shard_of)
        if shuffle:
            rng.shuffle(shards)
        for s in shards:
            positions = np.flatnonzero(shard_of == s)
            yield from (rng.permutation(positions) if shuffle else positions).tolist()

    def summary(self) -> str:
        """One line: how many records were kept and skipped, and why."""
        reasons = Counter("missing label" if "missing or not a finite" in r else r.split(": ", 1)[-1][:60]
                          for _, r in self.skipped)
        return (f"{len(self)} structures ({', '.join(self.targets)}); {len(self.skipped)} skipped"
                + (f": {dict(reasons.most_common(5))}" if reasons else ""))
