"""Joint multi-fidelity training against sequential transfer at an equal training budget, with seeds.

Sequential transfer (docs/results.md sections 1-2, ``benchmarks/cross_functional/*.json``) fine-tunes
one model per functional from ``CGAT-PBE-BandGap``: 10 epochs on N HSE, N GLLB-SC or N SCAN gaps.
Its budget for the three functionals together is 10 x (N_hse + N_gllbsc + N_scan) structure passes.
The joint model here starts from the same parent (``multi_fidelity_from``: four outputs, one per
fidelity) and trains on exactly the same training crystals, i.e. for each seed the same nested
subsets the sequential runs drew (``nested_subsets`` over each fidelity's training split, in
``splits.json`` order), with the PBE gaps those crystals have in the PBE training split. It gets as
many epochs as fit in the sequential budget (each crystal is one pass however many labels it has):
``round(10 * sum(N_f) / n_crystals)``. Same learning rate (3e-4, one triangular cycle), batch size,
precision (fp32) and validation rule (best epoch on the fixed validation splits).

    python benchmarks/mf_vs_sequential.py --sizes 300 --seeds 0 1 2
    python benchmarks/mf_vs_sequential.py --sizes 0 --seeds 0 1

Writes ``benchmarks/mf_vs_sequential.json`` (one row per size and seed, resumable: finished rows are
kept and skipped) and prints the table against the sequential rows of the same seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matgl
import numpy as np
import torch

import matgl_cgat  # noqa: F401  (shipped names for matgl.load_model)
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_dataset, load_splits, nested_subsets, split_per_target
from matgl_cgat.metrics import per_output_mae
from matgl_cgat.transfer import multi_fidelity_from

HERE = Path(__file__).resolve().parent
COLUMNS = {"pbe": "gap_pbe", "hse": "gap_hse", "gllbsc": "gap_gllbsc", "scan": "gap_scan"}
HIGHER = ("hse", "gllbsc", "scan")
SEQUENTIAL = {f: HERE / "cross_functional" / f"{COLUMNS[f]}_results.json" for f in HIGHER}


def training_ids(splits_path: Path, size: int, seed: int) -> dict[str, list[str]]:
    """The crystals each sequential run of (size, seed) trained on, per higher fidelity."""
    out = {}
    for f in HIGHER:
        ids = load_splits(splits_path, COLUMNS[f])["train"]
        n = len(ids) if size <= 0 or size > len(ids) else size
        out[f] = [ids[i] for i in nested_subsets(len(ids), [n], seed=seed)[0]]
    return out


def sequential_rows(size_of: dict[str, int], seed: int) -> dict[str, dict]:
    """The sequential study's rows (every strategy) for these sizes and this seed, per fidelity."""
    out = {}
    for f, path in SEQUENTIAL.items():
        rows = json.loads(path.read_text()) if path.is_file() else []
        out[f] = {r["strategy"]: r for r in rows if r["size"] == size_of[f] and r["seed"] == seed}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300], help="N per fidelity (0: whole split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--parent", default="CGAT-PBE-BandGap")
    parser.add_argument("--sequential-epochs", type=int, default=10, help="epochs of each sequential run")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="folder with mp_gap.jsonl.gz and splits.json")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--runs", type=Path, default=Path("runs/mf_vs_sequential"), help="run folders")
    parser.add_argument("--out", type=Path, default=HERE / "mf_vs_sequential.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data or default_data_dir() or "")
    if not (data_dir / "mp_gap.jsonl.gz").is_file():
        raise SystemExit("mp_gap data not found: pass --data PATH")
    splits_path = data_dir / "splits.json"

    columns = list(COLUMNS.values())
    ds = load_dataset(data_dir / "mp_gap.jsonl.gz", columns, require="any", cache_dir=args.graph_cache)
    ds = ds.with_targets(columns)
    parts = split_per_target(ds, splits_path, columns)
    pbe_train = set(load_splits(splits_path, "gap_pbe")["train"])
    # the best epoch is chosen on the higher fidelities' validation splits, as each sequential run's
    # was on its own; PBE validation labels would only add 3,354 crystals of inference per epoch
    val = parts["val"].keeping_labels({COLUMNS["pbe"]: []})
    parent = matgl.load_model(args.parent)

    rows = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    done = {(r["size"], r["seed"]) for r in rows}
    for size in args.sizes:
        for seed in args.seeds:
            if (size, seed) in done:
                continue
            subsets = training_ids(splits_path, size, seed)
            crystals = set().union(*subsets.values())
            keep = {COLUMNS[f]: subsets[f] for f in HIGHER}
            keep[COLUMNS["pbe"]] = sorted(crystals & pbe_train)
            train = parts["train"].keeping_labels(keep)
            y = {f: np.asarray(train.labels[c], dtype=float) for f, c in COLUMNS.items()}
            n_labels = {f: int(np.isfinite(v).sum()) for f, v in y.items()}
            budget = args.sequential_epochs * sum(n_labels[f] for f in HIGHER)
            epochs = max(1, round(budget / len(train)))
            model = multi_fidelity_from(parent, {f: (float(np.nanmean(v)), float(np.nanstd(v))) for f, v in y.items()},
                                        label_columns=COLUMNS)
            print(f"size {size} seed {seed}: {len(train)} crystals, labels {n_labels}, {epochs} epochs "
                  f"({epochs * len(train)} passes; sequential {budget})", flush=True)
            t0 = time.time()
            tuned = model.finetune(train, val, policy="full", renormalize=False, output_min=0.0,
                                   epochs=epochs, lr=args.lr, period=epochs, batch_size=args.batch_size, seed=seed,
                                   out_dir=args.runs / f"joint_n{size}_s{seed}")
            seconds = round(time.time() - t0, 1)
            maes = per_output_mae(tuned.predict_dataset(parts["test"]),
                                  {f: parts["test"].labels[c] for f, c in COLUMNS.items()})
            test = {f: round(m["mae"], 4) for f, m in maes.items()}
            rows.append({"size": size, "seed": seed, "crystals": len(train), "labels": n_labels, "epochs": epochs,
                         "passes": epochs * len(train), "sequential_passes": budget, "seconds": seconds,
                         "best_epoch": tuned.metadata["finetune"]["best_epoch"], "test_mae": test})
            atomic_write_text(args.out, json.dumps({"parent": args.parent, "lr": args.lr, "precision": "32-true",
                                                    "rows": rows}, indent=2) + "\n")
            print(f"  joint test MAE {test} in {seconds:.0f} s", flush=True)

    print(f"\n{'size':>5s} {'seed':>4s} {'fidelity':>8s} {'joint':>7s} {'full':>7s} {'head':>7s} {'scratch':>7s}  "
          "(test MAE, eV; sequential from benchmarks/cross_functional)")
    for r in sorted(rows, key=lambda r: (r["size"], r["seed"])):
        seq = sequential_rows({f: r["labels"][f] for f in HIGHER}, r["seed"])
        for f in HIGHER:
            cells = [f"{seq[f][s]['test_mae']:7.3f}" if s in seq[f] else f"{'-':>7s}" for s in ("full", "head", "scratch")]
            print(f"{r['size']:5d} {r['seed']:4d} {f:>8s} {r['test_mae'][f]:7.3f} {' '.join(cells)}")


if __name__ == "__main__":
    main()
