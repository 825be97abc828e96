"""Run folders you can trust: what a run was started with, checked before it is resumed; safe checkpoints.

A run folder holds ``run.json`` (the training config, the targets, digests of the training and
validation data and of the starting weights, and what the caller adds: policy, parent, ...),
``checkpoints/last.ckpt`` (written atomically at the end of every epoch), ``checkpoints/best.ckpt``
(weights only), ``logs/version_*/metrics.csv`` (Lightning's CSV logger; a resumed run adds a
version) and the merged ``metrics.csv``. Resuming with anything different from ``run.json`` is
refused with the list of differences; ``overwrite=True`` starts afresh. Checkpoints are read with
``torch.load(weights_only=True)``: tensors and plain values only, so a crafted file cannot run code.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from matgl_cgat._io import atomic_torch_save, atomic_write_text
from matgl_cgat.graph import graph_fields

RUN_FORMAT = 1


class RunFolderMismatch(ValueError):
    """A run folder holds a run started with other settings, data or starting weights."""


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that never unpickles code and never leaves half-written files."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu")


def load_checkpoint(path, map_location="cpu") -> dict[str, Any]:
    """A checkpoint's tensors and plain values; refuses files that would need unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError (or RuntimeError) for anything but plain data
        raise RunFolderMismatch(
            f"{path}: not a plain checkpoint of tensors and values ({type(exc).__name__}: {str(exc)[:200]}); "
            "refusing to unpickle it. Start afresh with overwrite=True (--overwrite)") from None


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """Short hash of a state dict's names, shapes and values."""
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(value).encode())
    return h.hexdigest()[:16]


def data_digest(dataset, targets) -> dict[str, Any]:
    """Size and short hash of a dataset's ids and labels (or graphs and labels), and its graph-cache key."""
    if dataset is None:
        return {"n": 0, "digest": None}
    h = hashlib.sha256()
    ids = getattr(dataset, "ids", None)
    labels = getattr(dataset, "labels", None)
    if ids is not None and isinstance(labels, dict) and all(t in labels for t in targets):
        h.update(json.dumps(list(ids)).encode())
        for t in targets:
            h.update(np.ascontiguousarray(labels[t], dtype=np.float64).tobytes())
    else:  # any dataset of (graph, ..., {target: label}) items: hash graph contents and labels
        for i in range(len(dataset)):
            item = dataset[i]
            fields = graph_fields(item[0])  # the same bytes whichever graph library carries the graph
            for key in sorted(fields):
                h.update(fields[key].detach().cpu().numpy().tobytes())
            h.update(json.dumps({t: float(item[3][t]) for t in targets if t in item[3]}, sort_keys=True).encode())
    out = {"n": len(dataset), "digest": h.hexdigest()[:16]}
    key = getattr(dataset, "cache_key", None)
    if key is not None:  # a GraphDataset: the key hashes the source's content or files and the converter
        out["graphs"] = key
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class RunFolder:
    """A training run's folder: its record, checkpoints and logs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def record_path(self) -> Path:
        return self.path / "run.json"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.ckpt"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "best.ckpt"

    def clear(self) -> None:
        """Remove what a previous run left (checkpoints, logs, record), keeping other files."""
        for name in ("checkpoints", "logs"):
            shutil.rmtree(self.path / name, ignore_errors=True)
        for name in ("run.json", "metrics.csv"):
            (self.path / name).unlink(missing_ok=True)

    def start(self, record: dict[str, Any], *, overwrite: bool, is_global_zero: bool = True,
              may_grow: tuple[str, ...] = ()) -> bool:
        """Check or write ``run.json``; returns whether there is a checkpoint to resume from.

        ``may_grow``: flattened keys whose value may be larger than recorded (e.g. ``config.epochs``
        when the learning-rate period is fixed: the epochs already run are unchanged).
        """
        record = json.loads(json.dumps({"format": RUN_FORMAT, **record}, default=str))
        if overwrite and is_global_zero:
            self.clear()
        if self.record_path.is_file():
            old = json.loads(self.record_path.read_text())
            a, b = _flatten(old), _flatten(record)
            diffs = []
            for key in sorted(set(a) | set(b)):
                if a.get(key) == b.get(key):
                    continue
                if key in may_grow and isinstance(a.get(key), (int, float)) and isinstance(b.get(key), (int, float)) \
                        and b[key] >= a[key]:
                    continue
                diffs.append(f"{key}: {a.get(key, '(absent)')!r} in the folder, {b.get(key, '(absent)')!r} now")
            if diffs:
                raise RunFolderMismatch(
                    f"{self.path} holds a run started differently; resuming it would mix two runs:\n  "
                    + "\n  ".join(diffs) + "\nUse another folder, or overwrite=True (--overwrite) to start afresh.")
            if is_global_zero and record != old:
                atomic_write_text(self.record_path, json.dumps(record, indent=2))
        elif self.last_checkpoint.is_file():
            raise RunFolderMismatch(f"{self.path} holds checkpoints but no run.json (a run of an older version?): "
                                    "use another folder, or overwrite=True (--overwrite) to start afresh")
        elif is_global_zero:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.record_path, json.dumps(record, indent=2))
        return self.last_checkpoint.is_file()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per-epoch rows merged from every logger version of a run (a resumed epoch replaces the old row).

    Columns: ``epoch``, ``lr`` (the first parameter group's rate during the epoch), and whatever
    was logged per epoch (``train_loss``, ``train_mae``, ``val_loss``, ``val_mae``, per-target MAEs).
    """
    logs = Path(run_dir) / "logs"
    versions = sorted(logs.glob("version_*"), key=lambda p: int(p.name.split("_")[1])) if logs.is_dir() else []
    by_epoch: dict[int, dict[str, Any]] = {}
    for version in versions:
        path = version / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        epochs_here = {int(float(r["epoch"])) for r in rows if r.get("epoch") not in (None, "")}
        for e in [e for e in by_epoch if epochs_here and e >= min(epochs_here)]:
            del by_epoch[e]  # this version re-ran these epochs
        pending_lr = None  # LearningRateMonitor logs at the start of an epoch, without the epoch number
        for r in rows:
            lr = next((float(v) for k, v in r.items() if k.startswith("lr-") and v not in (None, "")), None)
            if r.get("epoch") in (None, ""):
                pending_lr = lr if lr is not None else pending_lr
                continue
            e = int(float(r["epoch"]))
            row = by_epoch.setdefault(e, {"epoch": e})
            if pending_lr is not None:
                row["lr"], pending_lr = pending_lr, None
            for k, v in r.items():
                if v not in (None, "") and k not in ("epoch", "step") and not k.startswith("lr-"):
                    row[k] = float(v)
    return [by_epoch[e] for e in sorted(by_epoch)]


def write_metrics_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """The merged per-epoch table as one CSV (written atomically)."""
    fields = ["epoch", "lr"]
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
