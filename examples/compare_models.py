"""Train CGAT, MatGL's M3GNet and MatGL's MEGNet from scratch with the same CPU time each, and compare them.

All three models are trained on the same fixed split of the shared mp_gap set (``splits.json``),
through the same MatGL pipeline: ``MGLDataset`` with each model's own graph converter,
``MGLDataLoader``, ``ModelLightningModule`` and a Lightning ``Trainer``. What is held equal:

* the data: the first ``--n-train``/``--n-val``/``--n-test`` ids of each split of ``--target``
  (0 = the whole split), the same training-set mean/std for normalisation;
* the budget: ``--minutes`` of wall-clock training (+ validation) time per model, enforced by the
  Trainer's ``max_time``; building the graphs is timed separately and does not count;
* the optimiser: AdamW (``--lr``, weight decay 1e-6) at a constant learning rate (a schedule
  tied to a number of epochs would favour whichever model gets through more epochs), L1 loss;
* the evaluation: each model is tested with its best-validation-MAE weights (kept in memory), by predicting the
  same test structures in eval mode and scoring them with ``matgl_cgat.metrics.metrics_for``.

Model set-ups: CGAT ``"small"`` preset with its own converter; M3GNet as in
``train_cgat_vs_m3gnet.py`` (intensive, set2set readout, 5 A cutoff, 4 A three-body cutoff);
MEGNet as in MatGL's "Training a MEGNet Formation Energy Model" tutorial (4 A graph cutoff,
100 Gaussians on 0-5 A, dim_state_embedding=2 with the converter's default [0, 0] state).

    python examples/compare_models.py --target gap_hse --minutes 5

Writes ``--out``/<model>/result.json after each model (a rerun with the same settings reuses it
instead of retraining) and ``--out``/comparison.json with all results, the settings and the command.
"""

from __future__ import annotations

import os

os.environ.setdefault("DGLBACKEND", "pytorch")

import argparse
import hashlib
import json
import math
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import lightning as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Timer
from matgl.ext.pymatgen import Structure2Graph, get_element_list
from matgl.graph.data import MGLDataLoader
from matgl.layers import BondExpansion
from matgl.models import M3GNet, MEGNet
from matgl.utils.training import ModelLightningModule

from matgl_cgat import CGAT
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import (batch_line_graph, default_data_dir, graph_dataset, line_graph_in_batches, load_splits,
                             mgl_collate, read_structures)
from matgl_cgat.metrics import metrics_for

MODELS = ("cgat", "m3gnet", "megnet")
LABELS = {"cgat": "CGAT small", "m3gnet": "M3GNet", "megnet": "MEGNet"}

warnings.filterwarnings("ignore", message=".*does not have many workers.*")


# ----------------------------------------------------------------------------------------- data


def load_parts(data_dir: Path, target: str, n_train: int, n_val: int, n_test: int):
    """Structures and labels of the first N ids of each split (N = 0: all), in split order."""
    splits = load_splits(data_dir / "splits.json", target)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    wanted = {part: splits[part][: n or None] for part, n in sizes.items()}
    rec = read_structures(data_dir / "mp_gap.jsonl.gz", target, ids=set().union(*wanted.values()))
    pos = {rid: i for i, rid in enumerate(rec.ids)}
    parts = {}
    for part, ids in wanted.items():
        missing = [i for i in ids if i not in pos]
        if missing:  # a record that cannot be read; every model then lacks it alike
            print(f"warning: {len(missing)} {target}/{part} ids could not be read and are left out, e.g. {missing[:3]}")
        ids = [i for i in ids if i in pos]
        parts[part] = {"ids": ids, "structures": [rec.structures[pos[i]] for i in ids],
                       "labels": [float(rec.labels[target][pos[i]]) for i in ids]}
    if not parts["train"]["ids"] or not parts["val"]["ids"] or not parts["test"]["ids"]:
        raise SystemExit(f"empty split for {target}: {({p: len(v['ids']) for p, v in parts.items()})}")
    return parts


def build_datasets(parts, converter, target: str, line_graph: bool):
    """One in-memory MatGL dataset per split, each built in its own fresh folder without a cache (MatGL
    would otherwise silently reuse stale graphs); M3GNet's line graphs are in the dataset on MatGL 1.x
    and built by the model itself on MatGL 4."""
    return {part: graph_dataset(d["structures"], {target: d["labels"]}, converter, line_graph=line_graph)
            for part, d in parts.items()}


# --------------------------------------------------------------------------------------- models


def build_model(name: str, elements: tuple[str, ...], mean: float, std: float):
    """(model, graph converter, uses line graph, normalisation for ModelLightningModule)."""
    if name == "cgat":
        model = CGAT.from_preset("small")
        model.set_normalization(mean, std)  # CGAT de-normalises its own output, so the module must not
        return model, model.graph_converter(), False, {"data_mean": 0.0, "data_std": 1.0}
    matgl_norm = {"data_mean": mean, "data_std": std}
    if name == "m3gnet":
        model = M3GNet(element_types=elements, is_intensive=True, readout_type="set2set")
        return model, Structure2Graph(element_types=elements, cutoff=5.0), True, matgl_norm
    if name == "megnet":
        # MatGL's MEGNet tutorial configuration. element_types is also passed to the model so that its
        # node embedding is indexed by the same element list as the converter's node types.
        bond_expansion = BondExpansion(rbf_type="Gaussian", initial=0.0, final=5.0, num_centers=100, width=0.5)
        model = MEGNet(dim_node_embedding=16, dim_edge_embedding=100, dim_state_embedding=2, nblocks=3,
                       hidden_layer_sizes_input=(64, 32), hidden_layer_sizes_conv=(64, 64, 32),
                       nlayers_set2set=1, niters_set2set=2, hidden_layer_sizes_output=(32, 16),
                       is_classification=False, activation_type="softplus2", element_types=elements,
                       bond_expansion=bond_expansion, cutoff=4.0, gauss_width=0.5)
        return model, Structure2Graph(element_types=elements, cutoff=4.0), False, matgl_norm
    raise ValueError(f"unknown model {name!r}")


def predict(module: ModelLightningModule, loader, line_graph: bool) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) in target units for every item of ``loader``, in order."""
    module.eval()
    y_true, y_pred = [], []
    with torch.no_grad():
        for batch in loader:
            g, lat, l_g, state_attr, labels = batch_line_graph(batch)
            pred = module(g=g, lat=lat, l_g=l_g, state_attr=state_attr).reshape(-1)
            y_pred.append(pred * module.data_std + module.data_mean)
            y_true.append(labels.reshape(-1))
    return torch.cat(y_true).numpy().astype(float), torch.cat(y_pred).numpy().astype(float)


class BestWeights(Callback):
    """Keep a copy of the weights of the epoch with the lowest validation MAE (MatGL logs ``val_MAE``).

    Held in memory rather than as a Lightning checkpoint: MatGL's module stores its optimiser among
    the hyper-parameters, so its checkpoints cannot be read back with ``weights_only=True``.
    """

    def __init__(self):
        self.best, self.epoch, self.state = float("inf"), None, None

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking or "val_MAE" not in trainer.callback_metrics:
            return
        mae = float(trainer.callback_metrics["val_MAE"])
        if mae < self.best:
            self.best, self.epoch = mae, int(trainer.current_epoch)
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}


def train_and_test(name: str, parts, target: str, elements, mean: float, std: float, args, model_dir: Path) -> dict:
    pl.seed_everything(args.seed, verbose=False)
    model, converter, line_graph, norm = build_model(name, elements, mean, std)
    n_params = sum(p.numel() for p in model.parameters())

    t0 = time.perf_counter()
    data = build_datasets(parts, converter, target, line_graph)
    conversion_seconds = time.perf_counter() - t0

    collate = mgl_collate(line_graph)
    train_loader, val_loader, test_loader = MGLDataLoader(
        train_data=data["train"], val_data=data["val"], test_data=data["test"], collate_fn=collate,
        batch_size=args.batch_size, num_workers=0, generator=torch.Generator().manual_seed(args.seed),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-6)
    # ModelLightningModule steps a scheduler every epoch; a factor-1 ConstantLR keeps the rate fixed.
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    module = ModelLightningModule(model=model, loss="l1_loss", optimizer=optimizer, scheduler=scheduler,
                                  include_line_graph=line_graph_in_batches(line_graph), **norm)

    best = BestWeights()
    trainer = pl.Trainer(max_time=timedelta(minutes=args.minutes), max_epochs=10_000, accelerator="cpu",
                         logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=False,
                         num_sanity_val_steps=0, callbacks=[best])
    print(f"[{name}] {n_params:,} parameters; graphs built in {conversion_seconds:.1f} s; "
          f"training for {args.minutes:g} min ...", flush=True)
    t0 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    train_seconds = time.perf_counter() - t0
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))

    best_epoch = best.epoch
    if best.state is not None:
        module.load_state_dict(best.state)
    else:
        print(f"[{name}] warning: no validation finished within the budget; testing the final weights")
    y_true, y_pred = predict(module, test_loader, line_graph)
    if not np.allclose(y_true, parts["test"]["labels"]):
        raise RuntimeError(f"{name}: test labels came back out of order")
    best_val = best.best if best.state is not None else None
    return {
        "model": name,
        "label": LABELS[name],
        "parameters": int(n_params),
        "epochs": round(trainer.global_step / max(len(train_loader), 1), 2),  # fractional: the budget may end mid-epoch
        "optimizer_steps": int(trainer.global_step),
        "train_seconds": round(train_seconds, 2),
        "timer_seconds": round(timer.time_elapsed("train"), 2),
        "conversion_seconds": round(conversion_seconds, 2),
        "best_val_mae": float(best_val) if best_val is not None else None,
        "best_epoch": best_epoch,
        "used_final_weights": best_epoch is None,
        "test": metrics_for(target, y_true, y_pred),
        "test_predictions": [float(v) for v in y_pred],
    }


# -------------------------------------------------------------------------------------- reports


def clean(obj):
    """JSON-safe copy: NaN/inf become None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json_atomic(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(clean(obj), indent=2))


def fmt(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def print_table(rows: list[dict], target: str, unit: str) -> None:
    gap = "gap" in target.lower()
    head = f"{'model':12s} {'params':>9s} {'epochs':>7s} {'train s':>8s} {'conv s':>7s} " \
           f"{'MAE':>7s} {'RMSE':>7s} {'R2':>6s}"
    if gap:
        head += f" {'metal acc':>9s} {'MAE non-met':>11s}"
    print(f"\n{target} test set ({unit}), {rows[0]['test']['n']} structures")
    print(head)
    print("-" * len(head))
    for r in rows:
        t = r["test"]
        line = (f"{r['label']:12s} {fmt(r.get('parameters'), ',d'):>9s} {fmt(r.get('epochs'), '.1f'):>7s} "
                f"{fmt(r.get('train_seconds'), '.0f'):>8s} {fmt(r.get('conversion_seconds'), '.1f'):>7s} "
                f"{fmt(t['mae'], '.3f'):>7s} {fmt(t['rmse'], '.3f'):>7s} {fmt(t['r2'], '.3f'):>6s}")
        if gap:
            line += f" {fmt(t.get('metal_accuracy'), '.3f'):>9s} {fmt(t.get('mae_nonmetals'), '.3f'):>11s}"
        print(line)


def unit_of(target: str) -> str:
    name = target.lower()
    if "gap" in name:
        return "eV"
    if name.startswith(("e_form", "e_hull")):
        return "eV/atom"
    if name.startswith("vol"):
        return "A^3/atom"
    return "target units"


# ----------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with mp_gap.jsonl.gz and splits.json (default: default_data_dir())")
    parser.add_argument("--target", default="gap_hse", help="a key of splits.json, e.g. e_form_pbe, gap_pbe, gap_hse")
    parser.add_argument("--n-train", type=int, default=0, help="first N training ids (0: the whole split)")
    parser.add_argument("--n-val", type=int, default=0, help="first N validation ids (0: the whole split)")
    parser.add_argument("--n-test", type=int, default=0, help="first N test ids (0: the whole split)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget per model")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=Path("runs/compare_models"))
    args = parser.parse_args()
    if min(args.n_train, args.n_val, args.n_test) < 0 or args.minutes <= 0 or args.batch_size < 1:
        parser.error("--n-* must be >= 0, --minutes > 0 and --batch-size >= 1")

    data_dir = args.data or default_data_dir()
    if data_dir is None or not (Path(data_dir) / "mp_gap.jsonl.gz").is_file() \
            or not (Path(data_dir) / "splits.json").is_file():
        raise SystemExit(f"mp_gap data not found{f' in {data_dir}' if data_dir else ''}: pass --data PATH "
                         "(a folder with mp_gap.jsonl.gz and splits.json) or set $MATGL_CGAT_DATA")
    data_dir = Path(data_dir).resolve()
    torch.set_num_threads(args.threads)
    models = list(dict.fromkeys(args.models))  # keep the order given, drop repeats

    t0 = time.perf_counter()
    parts = load_parts(data_dir, args.target, args.n_train, args.n_val, args.n_test)
    counts = ", ".join(f"{len(d['ids'])} {part}" for part, d in parts.items())
    print(f"{args.target}: {counts} (read in {time.perf_counter() - t0:.0f} s)")
    y_train = np.array(parts["train"]["labels"])
    y_test = np.array(parts["test"]["labels"])
    mean, std = float(y_train.mean()), float(y_train.std()) or 1.0
    baseline = metrics_for(args.target, y_test, np.full_like(y_test, float(np.median(y_train))))
    elements = get_element_list([s for d in parts.values() for s in d["structures"]])
    ids_hash = hashlib.sha256(json.dumps({p: d["ids"] for p, d in parts.items()}).encode()).hexdigest()[:16]
    settings = {
        "data": str(data_dir), "target": args.target,
        "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test,
        "sizes": {p: len(d["ids"]) for p, d in parts.items()}, "ids_sha256": ids_hash,
        "minutes": args.minutes, "lr": args.lr, "weight_decay": 1e-6, "batch_size": args.batch_size,
        "seed": args.seed, "threads": args.threads, "train_mean": mean, "train_std": std,
    }

    results = {}
    for name in models:
        model_dir = args.out / name
        result_file = model_dir / "result.json"
        model_settings = {**settings, "model": name}
        if result_file.is_file():
            try:
                saved = json.loads(result_file.read_text())
            except (OSError, json.JSONDecodeError):
                saved = {}
            if saved.get("settings") == clean(model_settings):
                print(f"[{name}] reusing {result_file} (same settings)")
                results[name] = saved["result"]
                continue
            print(f"[{name}] {result_file} has other settings; retraining")
        result = train_and_test(name, parts, args.target, elements, mean, std, args, model_dir)
        write_json_atomic(result_file, {"settings": model_settings, "result": result})
        results[name] = json.loads(json.dumps(clean(result)))  # same form as a reused result

    unit = unit_of(args.target)
    rows = [results[n] for n in models]
    rows.append({"label": "train median", "test": baseline})
    print_table(rows, args.target, unit)
    note = "; metal = gap < 0.1 eV" if "gap" in args.target.lower() else ""
    print(f"(budget {args.minutes:g} min of training per model; epochs may be fractional; errors in {unit}{note})")

    summary = {
        "command": sys.argv,
        "settings": {**settings, "models": models, "elements": list(elements)},
        "test_ids": parts["test"]["ids"],
        "results": {n: {k: v for k, v in results[n].items() if k != "test_predictions"} for n in models},
        "median_baseline": {"value": float(np.median(y_train)), "test": baseline},
        "median_baseline_mae": baseline["mae"],
    }
    write_json_atomic(args.out / "comparison.json", summary)
    print(f"wrote {args.out / 'comparison.json'}")


if __name__ == "__main__":
    main()
