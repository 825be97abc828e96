"""Four ways to use a universal potential for a formation enthalpy beyond PBE, side by side (issue #34).

On the fixed split of a target (``e_form_r2scan``, ``e_form_exp`` of ``hifi_eform.jsonl.gz``, or
``e_form_pbe`` of ``mp_gap.jsonl.gz``), for nested training subsets (100 / 300 / all labels, the same
crystals as ``examples/cross_functional.py`` picks for each seed) it scores on the test split:

- ``zero_shot``: the potential's formation enthalpy as it is (no labels used);
- ``corrected``: plus a per-element linear correction of its residual, least squares on the element
  fractions of the training subset (:class:`matgl_cgat.potentials.ElementCorrection`);
- ``delta``: Δ-CGAT, a full transfer of ``--parent`` (``CGAT-PBE-Eform``) that learns target minus the
  potential's value; the prediction is the potential's value plus CGAT's;
- ``delta_corrected``: the same on top of the corrected potential (CGAT learns what the per-element
  correction leaves);
- ``pseudo``: full transfer to the target from ``--pseudo-parent``, a CGAT pre-trained on the
  potential's values of the shared crystals (``benchmarks/pseudo_label_pretrain.py``); a plain CGAT
  that needs no potential at run time.

Potential values come from ``examples/potential_labels.py`` (``--labels`` folder of CSV files). The
CGAT routes use the cross-functional recipe of the transfer rows in ``docs/results.md`` 10.1 (20
epochs, one cycle peaking at 3e-4, bf16-mixed, best epoch by validation) and are resumable (one run folder each). Every row records the validation MAE, by which
a route is chosen, and the test MAE, which is only reported. Writes ``<runs>/<target>_routes.json``.

    python benchmarks/potential_routes.py --target e_form_r2scan --labels runs/labels/M3GNet-MatPES-r2SCAN \\
        --sizes 100 300 0 --seeds 0 1 2 --runs runs/potential_routes
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import matgl
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import (default_data_dir, load_dataset, nested_subsets, read_structures, split_from_file,
                             target_info)
from matgl_cgat.potentials import ElementCorrection

ROUTES = ("zero_shot", "corrected", "delta", "delta_corrected", "pseudo")
FILES = {"e_form_pbe": ("mp_gap.jsonl.gz", "splits.json")}


def read_potential_values(folder: Path, data_file: str) -> dict[str, float]:
    path = folder / f"{data_file.split('.')[0]}.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: no potential values; run examples/potential_labels.py first")
    with open(path) as f:
        return {row["id"]: float(row["e_form_potential"]) for row in csv.DictReader(f)}


def mae(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=["e_form_r2scan", "e_form_exp", "e_form_pbe"])
    parser.add_argument("--labels", type=Path, required=True, help="folder of examples/potential_labels.py")
    parser.add_argument("--parent", default="CGAT-PBE-Eform")
    parser.add_argument("--pseudo-parent", default=None, help="for --routes pseudo: the pre-trained folder")
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=ROUTES)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="bf16-mixed", help="as the transfer rows of docs/results.md 10.1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs/potential_routes"))
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--select-on", type=int, default=0,
                        help="pick each CGAT run's best epoch on this many validation crystals (a fixed random "
                             "subset; 0: all). For e_form_pbe, whose 3,559 validation crystals would cost more "
                             "per epoch than the training; every row is still scored on the whole split")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = default_data_dir()
    if args.target in FILES:
        file, splits_file = FILES[args.target]
    else:
        info = target_info(args.target)
        file, splits_file = info.file, info.splits
    potential = read_potential_values(args.labels, file)
    potential_name = json.loads((args.labels / f"{file.split('.')[0]}.json").read_text())["potential"]
    ds = load_dataset(data_dir / file, args.target, cache_dir=args.graph_cache)
    parts = split_from_file(ds, data_dir / splits_file, args.target)
    train, val, test = parts["train"], parts["val"], parts["test"]
    wanted = set(train.ids) | set(val.ids) | set(test.ids)
    records = read_structures(data_dir / file, args.target, ids=wanted)
    structure = dict(zip(records.ids, records.structures))
    # A training crystal the potential could not handle (an element without a reference: Pu) cannot
    # enter a route built on the potential: it leaves the training split, counted in every row. The
    # validation and test splits must stay whole, so a gap there stops the run instead.
    without = [i for i in train.ids if i not in potential]
    if without:
        print(f"{len(without)} training crystals have no potential value and are left out: {without[:5]}")
        train = train.subset([k for k, i in enumerate(train.ids) if i in potential])
    for name, part in (("val", val), ("test", test)):
        lacking = [i for i in part.ids if i not in potential]
        if lacking:  # never scored on fewer crystals without saying so: stop instead
            raise SystemExit(f"{len(lacking)} {name} crystals have no potential value (first {lacking[:5]}); "
                             "see the skips in the labels' JSON")
    pot = {name: np.array([potential[i] for i in part.ids]) for name, part in
           (("train", train), ("val", val), ("test", test))}
    y = {name: part.labels[args.target] for name, part in (("train", train), ("val", val), ("test", test))}
    s = {name: [structure[i] for i in part.ids] for name, part in (("train", train), ("val", val), ("test", test))}

    selection = val  # what the fine-tuning picks its best epoch on; the rows score the whole split
    if 0 < args.select_on < len(val):
        picked = np.random.default_rng(0).choice(len(val), args.select_on, replace=False)
        selection = val.subset(sorted(int(k) for k in picked))
    args.runs.mkdir(parents=True, exist_ok=True)
    out = args.runs / f"{args.target}_routes.json"
    rows = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["route"], r["size"], r["seed"]) for r in rows}

    def record(row: dict) -> None:
        row["train_left_out"] = without
        rows.append(row)
        done.add((row["route"], row["size"], row["seed"]))
        atomic_write_text(out, json.dumps(rows, indent=1))
        print(json.dumps(row), flush=True)

    if "zero_shot" in args.routes and ("zero_shot", 0, 0) not in done:
        record({"route": "zero_shot", "size": 0, "seed": 0, "val_mae": mae(pot["val"], y["val"]),
                "test_mae": mae(pot["test"], y["test"]), "n_test": len(test), "potential": potential_name})
    parent = matgl.load_model(args.parent) if {"delta", "delta_corrected"} & set(args.routes) else None
    sizes = sorted(len(train) if n <= 0 else min(n, len(train)) for n in args.sizes)
    for seed in args.seeds:
        for size, subset in zip(sizes, nested_subsets(len(train), sizes, seed=seed)):
            correction = ElementCorrection.fit([s["train"][i] for i in subset], pot["train"][subset],
                                               y["train"][subset])
            base = {name: correction.apply(s[name], pot[name]) for name in ("train", "val", "test")}
            if "corrected" in args.routes and ("corrected", size, seed) not in done:
                record({"route": "corrected", "size": size, "seed": seed, "val_mae": mae(base["val"], y["val"]),
                        "test_mae": mae(base["test"], y["test"]),
                        "test_unseen_elements": int(sum(bool(correction.unseen(x)) for x in s["test"]))})
            if "pseudo" in args.routes and ("pseudo", size, seed) not in done:
                pseudo = matgl.load_model(args.pseudo_parent)
                t0, cpu0 = time.time(), time.process_time()
                torch.manual_seed(seed)
                model = pseudo.finetune(train.subset(subset), selection, policy="full", renormalize=True,
                                        epochs=args.epochs, lr=args.lr, period=args.epochs, batch_size=args.batch_size,
                                        seed=seed, output_min=None, precision=args.precision,
                                        out_dir=args.runs / f"{args.target}_pseudo_n{size}_s{seed}")
                pred_val = np.asarray(model.predict_dataset(val), dtype=float).ravel()
                pred_test = np.asarray(model.predict_dataset(test), dtype=float).ravel()
                record({"route": "pseudo", "size": size, "seed": seed, "val_mae": mae(pred_val, y["val"]),
                        "test_mae": mae(pred_test, y["test"]), "pseudo_parent": str(args.pseudo_parent),
                        "seconds": round(time.time() - t0), "cpu_seconds": round(time.process_time() - cpu0)})
            for route in ("delta", "delta_corrected"):
                if route not in args.routes or (route, size, seed) in done:
                    continue
                start = {n: (base[n] if route == "delta_corrected" else pot[n]) for n in ("train", "val", "test")}
                residual = {i: yy - p for part, n in ((train, "train"), (val, "val"))
                            for i, yy, p in zip(part.ids, y[n], start[n])}
                t0, cpu0 = time.time(), time.process_time()
                torch.manual_seed(seed)
                model = parent.finetune(train.subset(subset).with_label("residual", residual),
                                        selection.with_label("residual", residual), policy="full", renormalize=True,
                                        epochs=args.epochs, lr=args.lr, period=args.epochs,
                                        batch_size=args.batch_size, seed=seed, output_min=None,
                                        precision=args.precision,
                                        out_dir=args.runs / f"{args.target}_{route}_n{size}_s{seed}")
                pred_val = start["val"] + np.asarray(model.predict_dataset(val), dtype=float).ravel()
                pred_test = start["test"] + np.asarray(model.predict_dataset(test), dtype=float).ravel()
                record({"route": route, "size": size, "seed": seed, "val_mae": mae(pred_val, y["val"]),
                        **({"selected_on": len(selection)} if selection is not val else {}),
                        "test_mae": mae(pred_test, y["test"]), "best_val_mae": model.metadata["finetune"]["best_val_mae"],
                        "seconds": round(time.time() - t0), "cpu_seconds": round(time.process_time() - cpu0)})
    summary = {}
    for route in args.routes:
        for size in ([0] if route == "zero_shot" else sizes):
            cell = [r for r in rows if r["route"] == route and r["size"] == size]
            if cell:
                summary[f"{route}@{size}"] = {k: [round(float(np.mean([r[k] for r in cell])), 4),
                                                  round(float(np.std([r[k] for r in cell])), 4)]
                                              for k in ("val_mae", "test_mae")} | {"seeds": len(cell)}
    atomic_write_text(args.runs / f"{args.target}_routes_summary.json", json.dumps(
        {"summary": summary, "command": "python benchmarks/potential_routes.py " +
         " ".join(shlex.quote(a) for a in sys.argv[1:])}, indent=1))
    for k, v in summary.items():
        print(f"{k:24s} val {v['val_mae'][0]:.4f} ± {v['val_mae'][1]:.4f}  test {v['test_mae'][0]:.4f} "
              f"± {v['test_mae'][1]:.4f}  ({v['seeds']} seeds)")


if __name__ == "__main__":
    main()
