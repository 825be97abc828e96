"""Error against pre-training-set size: pre-train on N cheap (PBE) labels, fine-tune on a fixed expensive set.

The second curve the budget planner (``mgl-cgat plan``) needs, next to the error-against-training-size
curve of ``mgl-cgat scaling run``. For each pre-training size N (nested subsets of the PBE training
split) a fresh CGAT is pre-trained on the PBE property, then fully fine-tuned on the same
``--n-train`` structures of the expensive property and tested on its fixed test split. Pre-training
keeps the number of training samples seen roughly fixed (``--samples``: epochs = samples / N, at
least ``--min-epochs``), so the small sets are not also the briefly trained ones.

    python examples/pretrain_size_curve.py --pretrain-target gap_pbe --target gap_hse \\
        --sizes 1000 3000 10000 --n-train 1000 --out runs/pretrain_size_hse

Results (``results.csv``/``.json`` with ``size`` = pre-training size, strategy ``full``) load into
``mgl-cgat scaling fit`` and ``mgl-cgat plan --pretrain-results``. Resumable: finished sizes are skipped.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from matgl_cgat import CGAT
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_dataset, nested_subsets, split_from_file
from matgl_cgat.metrics import metrics_for
from matgl_cgat.scaling import results_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with mp_gap.jsonl.gz and splits.json")
    parser.add_argument("--pretrain-target", default="gap_pbe")
    parser.add_argument("--target", default="gap_hse")
    parser.add_argument("--sizes", type=int, nargs="+", required=True, help="pre-training sizes")
    parser.add_argument("--n-train", type=int, default=1000, help="fine-tuning size (0: the whole split)")
    parser.add_argument("--samples", type=int, default=30000, help="pre-training samples seen per size")
    parser.add_argument("--min-epochs", type=int, default=3)
    parser.add_argument("--pretrain-val", type=int, default=500,
                        help="validation structures during pre-training (a subset: it runs every epoch)")
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs")
    parser.add_argument("--lr-pretrain", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=3e-4, help="fine-tuning peak learning rate")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = args.data or default_data_dir()
    if data_dir is None:
        raise SystemExit("mp_gap data not found: pass --data PATH")
    source, splits = Path(data_dir) / "mp_gap.jsonl.gz", Path(data_dir) / "splits.json"

    pre = split_from_file(load_dataset(source, args.pretrain_target, cache_dir=args.graph_cache), splits,
                          args.pretrain_target)
    fine = split_from_file(load_dataset(source, args.target, cache_dir=args.graph_cache), splits, args.target)
    pre_val = pre["val"].subset(nested_subsets(len(pre["val"]), [min(args.pretrain_val, len(pre["val"]))],
                                               seed=args.seed)[0])
    n_train = len(fine["train"]) if args.n_train <= 0 else min(args.n_train, len(fine["train"]))
    train = fine["train"].subset(nested_subsets(len(fine["train"]), [n_train], seed=args.seed)[0])
    y_test = np.asarray(fine["test"].labels[args.target], dtype=float)

    results_path = args.out / "results.json"
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {r["size"] for r in rows}
    for size in sorted(args.sizes):
        if size in done:
            continue
        idx = nested_subsets(len(pre["train"]), [size], seed=args.seed)[0]
        epochs = max(args.min_epochs, round(args.samples / size))
        torch.manual_seed(args.seed)
        t0 = time.time()
        pretrained = CGAT.from_preset(args.preset).finetune(
            pre["train"].subset(idx), pre_val, policy="full", epochs=epochs, lr=args.lr_pretrain, period=epochs,
            out_dir=args.out / f"pretrain_n{size}", seed=args.seed, progress=False)
        t1 = time.time()
        tuned = pretrained.finetune(train, fine["val"], policy="full", epochs=args.epochs, lr=args.lr,
                                    period=args.epochs, out_dir=args.out / f"finetune_n{size}", seed=args.seed,
                                    progress=False)
        metrics = metrics_for(args.target, y_test, tuned.predict_dataset(fine["test"]))
        row = {"target": args.target, "size": size, "strategy": "full", "seed": args.seed,
               **{f"test_{k}": v for k, v in metrics.items() if k != "n"},
               "best_val_mae": tuned.metadata["finetune"]["best_val_mae"], "pretrain_epochs": epochs,
               "pretrain_best_val_mae": pretrained.metadata["finetune"]["best_val_mae"], "n_train": n_train,
               "epochs": args.epochs, "lr": args.lr, "seconds": round(time.time() - t0, 1),
               "pretrain_seconds": round(t1 - t0, 1)}
        rows.append(row)
        atomic_write_text(results_path, json.dumps(rows, indent=2))
        atomic_write_text(args.out / "results.csv", results_csv(rows))
        print(f"pre-train {size:6d} ({epochs} epochs, PBE val MAE {row['pretrain_best_val_mae']:.3f}) -> "
              f"{args.target} test MAE {row['test_mae']:.4f} ({row['seconds']:.0f} s)", flush=True)
    atomic_write_text(args.out / "command.txt", "python examples/pretrain_size_curve.py "
           + " ".join(shlex.quote(a) for a in sys.argv[1:]) + "\n")


if __name__ == "__main__":
    main()
