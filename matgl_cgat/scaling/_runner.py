"""Learning curves: train at a grid of training-set sizes, strategies and seeds; test on one fixed set.

Every (size, strategy, seed) run has its own folder (checkpoints, per-epoch ``metrics.csv``, test
predictions) and its row is appended to ``results.json``/``results.csv`` as soon as it finishes, so
an interrupted study resumes where it stopped and finished runs are never redone. The grid may grow
between invocations (more sizes or seeds); the settings that make runs comparable (target, parent,
architecture, epochs, learning rates, the train/val/test sets) may not, and a mismatch is an error.

Training sets are nested: for one seed, every smaller set lies inside every larger one, so a curve
measures more data, not different data. Strategies: ``"scratch"`` (no transfer: a freshly
initialised model of the parent's architecture) or the name of any freeze policy applied to the
parent (``"head"``: only the regression head trains; ``"full"``: everything trains; ``"last:1"``, ...).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import nested_subsets
from matgl_cgat.metrics import metrics_for
from matgl_cgat.workflows import write_predictions

from ._fit import PowerLawFit, fit_power_law

RESULT_FIELDS = ("target", "size", "strategy", "seed", "test_mae", "test_rmse", "test_r2", "best_val_mae",
                 "best_epoch", "epochs", "lr", "seconds")


def _ids_digest(ds) -> str:
    ids = list(getattr(ds, "ids", None) or [str(i) for i in range(len(ds))])
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]


def results_csv(rows: list[dict]) -> str:
    """Rows as CSV: the standard columns first, then any extra metrics in sorted order."""
    extra = sorted({k for r in rows for k in r} - set(RESULT_FIELDS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*RESULT_FIELDS, *extra], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def load_results(path: str | Path) -> list[dict]:
    """Rows of a finished or partial study: a study folder, its ``results.json`` or a ``results.csv``."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json" if (path / "results.json").is_file() else path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no learning-curve results at {path}")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return data["rows"] if isinstance(data, dict) else data
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k in ("size", "seed", "best_epoch", "epochs"):
                r[k] = int(float(v)) if v not in ("", None) else None
            elif k not in ("target", "strategy"):
                try:
                    r[k] = float(v)
                except (TypeError, ValueError):
                    pass
    return rows


def fit_results(rows: list[dict], metric: str = "test_mae", n_boot: int = 1000) -> dict[str, PowerLawFit]:
    """One power-law fit per strategy (strategies with fewer than two sizes are left out)."""
    fits = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        sel = [r for r in rows if r["strategy"] == strategy and r.get(metric) not in (None, "")]
        if len({r["size"] for r in sel}) >= 2:
            fits[strategy] = fit_power_law([r["size"] for r in sel], [float(r[metric]) for r in sel], n_boot=n_boot)
    return fits


def _fresh_like(parent, preset: str):
    from matgl_cgat import CGAT

    if parent is None:
        return CGAT.from_preset(preset)
    args = {k: v for k, v in dict(parent._init_args).items() if k not in ("data_mean", "data_std")}
    return type(parent)(**args)


def run_learning_curve(train, val, test, *, target: str, sizes, out_dir: str | Path,
                       strategies=("scratch", "head", "full"), seeds=(0,), parent=None, preset: str = "small",
                       epochs: int | None = None, lr_scratch: float | None = None, lr_transfer: float | None = None,
                       batch_size: int | None = None, progress: bool = True, verbose: bool = False) -> list[dict]:
    """Train and test every (size, strategy, seed) not already in ``out_dir``; return all rows.

    Args:
        train, val, test: datasets (``load_dataset``/``split_from_file``) labelled with ``target``.
        sizes: training-set sizes; 0 (or anything above ``len(train)``) means the whole training set.
        strategies: ``"scratch"`` and/or freeze-policy names applied to ``parent``.
        parent: the pre-trained model (needed by every strategy but ``"scratch"``); scratch models copy
            its architecture, or use ``preset`` when there is no parent.
        epochs: per run, one triangular learning-rate cycle of this length; best epoch by validation MAE.
        lr_scratch, lr_transfer: peak learning rates without and with transfer.
        Unset settings come from the ``cpu`` (scratch) and ``cpu-transfer`` recipes of
        :mod:`matgl_cgat.training` (epochs and batch size from ``cpu-transfer``).
    """
    from matgl_cgat.training import recipe

    scratch_cfg, transfer_cfg = recipe("cpu"), recipe("cpu-transfer")
    epochs = transfer_cfg.epochs if epochs is None else epochs
    batch_size = transfer_cfg.batch_size if batch_size is None else batch_size
    lr_scratch = scratch_cfg.lr if lr_scratch is None else lr_scratch
    lr_transfer = transfer_cfg.lr if lr_transfer is None else lr_transfer
    out_dir = Path(out_dir)
    strategies = list(strategies)
    if parent is None and any(s != "scratch" for s in strategies):
        raise ValueError(f"strategies {[s for s in strategies if s != 'scratch']} need a parent model")
    sizes = sorted({len(train) if s <= 0 or s > len(train) else int(s) for s in sizes})
    config = {
        "target": target,
        "parent": (getattr(parent, "metadata", None) or {}).get("name") if parent is not None else None,
        "architecture": ({k: v for k, v in dict(parent._init_args).items() if k not in ("data_mean", "data_std")}
                         if parent is not None else {"preset": preset}),
        "epochs": epochs, "lr_scratch": lr_scratch, "lr_transfer": lr_transfer, "batch_size": batch_size,
        "train": [len(train), _ids_digest(train)], "val": [len(val), _ids_digest(val)],
        "test": [len(test), _ids_digest(test)],
    }
    config = json.loads(json.dumps(config))
    config_path = out_dir / "config.json"
    if config_path.is_file():
        old = json.loads(config_path.read_text())
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if changed:
            raise ValueError(f"{out_dir} holds a study with different settings ({', '.join(changed)}); resume it with "
                             f"the same settings or use a new folder")
    else:
        atomic_write_text(config_path, json.dumps(config, indent=2))

    results_path = out_dir / "results.json"
    rows = load_results(results_path) if results_path.is_file() else []
    done = {(r["size"], r["strategy"], r["seed"]) for r in rows}
    todo = [(seed, size, s) for seed in seeds for size in sizes for s in strategies if (size, s, seed) not in done]
    y_test = np.asarray(test.labels[target], dtype=float)

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="learning curve", unit="run")
    for seed, size, strategy in todo:
        rows_idx = nested_subsets(len(train), [size], seed=seed)[0]
        if bar is not None:
            bar.set_postfix_str(f"{strategy} n={size} seed={seed}")
        if strategy == "scratch":
            torch.manual_seed(seed)
            source, policy, lr = _fresh_like(parent, preset), "full", lr_scratch
        else:
            source, policy, lr = parent, strategy, lr_transfer
        run_dir = out_dir / "runs" / f"{strategy.replace(':', '')}_n{size}_s{seed}"
        t0 = time.time()
        model = source.finetune(train.subset(rows_idx), val, policy=policy, renormalize=True, epochs=epochs, lr=lr,
                                period=epochs, batch_size=batch_size, out_dir=run_dir, seed=seed, progress=verbose)
        pred = np.asarray(model.predict_dataset(test), dtype=float)
        metrics = metrics_for(target, y_test, pred)
        rec = model.metadata["finetune"]
        row = {"target": target, "size": size, "strategy": strategy, "seed": seed,
               **{f"test_{k}": v for k, v in metrics.items() if k != "n"},
               "best_val_mae": rec["best_val_mae"], "best_epoch": rec["best_epoch"], "epochs": epochs, "lr": lr,
               "seconds": round(time.time() - t0, 1)}
        write_predictions(run_dir / "test_predictions.csv", test, y_test, pred)
        rows.append(row)
        atomic_write_text(results_path, json.dumps(rows, indent=2))
        atomic_write_text(out_dir / "results.csv", results_csv(rows))
        if bar is not None:
            bar.update(1)
            bar.write(f"{strategy:>8s} n={size:<6d} seed={seed}: test MAE {row['test_mae']:.4f}  "
                      f"({row['seconds']:.0f} s)")
    if bar is not None:
        bar.close()
    return rows


def summarize(rows: list[dict], metric: str = "test_mae") -> list[dict]:
    """Mean and standard deviation over seeds for every (strategy, size)."""
    out = []
    keys = dict.fromkeys((r["strategy"], r["size"]) for r in rows)
    for strategy, size in sorted(keys, key=lambda k: (k[0], k[1])):
        vals = np.array([float(r[metric]) for r in rows if r["strategy"] == strategy and r["size"] == size])
        out.append({"strategy": strategy, "size": size, "n_seeds": int(len(vals)), "mean": float(vals.mean()),
                    "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0})
    return out
