"""Joint multi-fidelity training against sequential transfer for formation energies, at an equal budget.

The energy counterpart of ``mf_vs_sequential.py`` (docs/results.md 8.2, there for band gaps).
Sequential transfer (docs/results.md 10.1, ``benchmarks/hifi_eform/e_form_*_results.json``) fine-tunes
``CGAT-PBE-Eform`` once per target: 20 epochs on N r2SCAN or N measured formation enthalpies, so its
budget for the two is 20 x (N_r2scan + N_exp) structure passes. The joint model here starts from the
same parent (``multi_fidelity_from``: outputs ``pbe``, ``r2scan``, ``exp``) and trains on exactly the
crystals those runs drew (for each seed, the same ``nested_subsets`` of each target's training split,
in ``hifi_eform_splits.json`` order), with the PBE formation energies those crystals have in the
parent's training split (``splits.json['e_form_pbe']``; joined from ``mp_gap.jsonl.gz`` by ``mat_id``,
so no PBE test label is trained on). It gets as many epochs as fit in the sequential budget (each
crystal is one pass however many labels it has). Same peak learning rate (3e-4, one triangular
cycle), batch size, precision (bf16-mixed) and validation rule (best epoch on the r2SCAN and measured
validation splits).

    python benchmarks/mf_vs_sequential_energy.py --sizes 100 300 0 --seeds 0 1

Writes ``benchmarks/hifi_eform/mf_vs_sequential_energy.json`` (one row per size and seed; finished
rows are kept and skipped) and prints the table against the sequential rows of the same seeds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import matgl
import numpy as np
import torch

import matgl_cgat  # noqa: F401  (shipped names for matgl.load_model)
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_dataset, load_splits, nested_subsets, read_columns
from matgl_cgat.metrics import per_output_mae
from matgl_cgat.transfer import multi_fidelity_from

HERE = Path(__file__).resolve().parent
COLUMNS = {"pbe": "e_form_pbe", "r2scan": "e_form_r2scan", "exp": "e_form_exp"}
HIGHER = ("r2scan", "exp")
SEQUENTIAL_EPOCHS = 20


def joined_file(data_dir: Path, out: Path) -> Path:
    """``hifi_eform.jsonl.gz`` with each crystal's ``e_form_pbe`` from ``mp_gap.jsonl.gz`` added (by
    ``mat_id``), written once into the run folder: the shared data itself is never changed."""
    if out.is_file():
        return out
    pbe = read_columns(data_dir / "mp_gap.jsonl.gz", {"e_form_pbe"})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with gzip.open(data_dir / "hifi_eform.jsonl.gz", "rt") as src, gzip.open(tmp, "wt") as dst:
        for line_no, line in enumerate(src, 1):
            record = json.loads(line)
            if record["mat_id"] not in pbe:
                raise SystemExit(f"{data_dir / 'hifi_eform.jsonl.gz'} line {line_no}: {record['mat_id']} is not in "
                                 "mp_gap.jsonl.gz, so it has no PBE formation energy to join")
            record["e_form_pbe"] = pbe[record["mat_id"]]["e_form_pbe"]
            dst.write(json.dumps(record) + "\n")
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 0], help="N per target (0: whole split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--parent", default="CGAT-PBE-Eform")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="folder with the shared mp_gap data")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--runs", type=Path, default=Path("runs/mf_vs_sequential_energy"), help="run folders")
    parser.add_argument("--out", type=Path, default=HERE / "hifi_eform" / "mf_vs_sequential_energy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data or default_data_dir() or "")
    if not (data_dir / "hifi_eform.jsonl.gz").is_file():
        raise SystemExit(f"hifi_eform.jsonl.gz not found in {data_dir}: pass --data PATH")
    hifi_splits = data_dir / "hifi_eform_splits.json"

    columns = list(COLUMNS.values())
    ds = load_dataset(joined_file(data_dir, args.runs / "hifi_eform_with_pbe.jsonl.gz"), columns, require="any",
                      cache_dir=args.graph_cache).with_targets(columns)
    split = {f: load_splits(hifi_splits, COLUMNS[f]) for f in HIGHER}
    pbe_train = set(load_splits(data_dir / "splits.json", "e_form_pbe")["train"])
    no_pbe = {COLUMNS["pbe"]: []}
    val = ds.keeping_labels({**no_pbe, **{COLUMNS[f]: split[f]["val"] for f in HIGHER}})
    test = ds.keeping_labels({**no_pbe, **{COLUMNS[f]: split[f]["test"] for f in HIGHER}})
    parent = matgl.load_model(args.parent)

    rows = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    done = {(r["size"], r["seed"]) for r in rows}
    for size in args.sizes:
        for seed in args.seeds:
            if (size, seed) in done:
                continue
            subsets = {}
            for f in HIGHER:
                ids = split[f]["train"]
                n = len(ids) if size <= 0 or size > len(ids) else size
                subsets[f] = [ids[i] for i in nested_subsets(len(ids), [n], seed=seed)[0]]
            crystals = set().union(*subsets.values())
            keep = {COLUMNS[f]: subsets[f] for f in HIGHER}
            keep[COLUMNS["pbe"]] = sorted(crystals & pbe_train)
            train = ds.keeping_labels(keep)
            y = {f: np.asarray(train.labels[c], dtype=float) for f, c in COLUMNS.items()}
            n_labels = {f: int(np.isfinite(v).sum()) for f, v in y.items()}
            budget = SEQUENTIAL_EPOCHS * sum(n_labels[f] for f in HIGHER)
            epochs = max(1, round(budget / len(train)))
            model = multi_fidelity_from(parent, {f: (float(np.nanmean(v)), float(np.nanstd(v))) for f, v in y.items()},
                                        label_columns=COLUMNS)
            print(f"size {size} seed {seed}: {len(train)} crystals, labels {n_labels}, {epochs} epochs "
                  f"({epochs * len(train)} passes; sequential {budget})", flush=True)
            t0, cpu0 = time.time(), time.process_time()
            tuned = model.finetune(train, val, policy="full", renormalize=False, epochs=epochs, lr=args.lr,
                                   period=epochs, batch_size=args.batch_size, seed=seed, precision=args.precision,
                                   out_dir=args.runs / f"joint_n{size}_s{seed}")
            maes = per_output_mae(tuned.predict_dataset(test), {f: test.labels[c] for f, c in COLUMNS.items()})
            rows.append({"size": size, "seed": seed, "crystals": len(train), "labels": n_labels, "epochs": epochs,
                         "passes": epochs * len(train), "sequential_passes": budget,
                         "seconds": round(time.time() - t0), "cpu_seconds": round(time.process_time() - cpu0),
                         "best_epoch": tuned.metadata["finetune"]["best_epoch"],
                         "test_mae": {f: round(maes[f]["mae"], 4) for f in HIGHER},
                         "test_n": {f: int(np.isfinite(test.labels[COLUMNS[f]]).sum()) for f in HIGHER}})
            atomic_write_text(args.out, json.dumps({"parent": args.parent, "lr": args.lr, "precision": args.precision,
                                                    "rows": rows}, indent=2) + "\n")
            print(f"  joint test MAE {rows[-1]['test_mae']} in {rows[-1]['seconds']} s", flush=True)

    print(f"\n{'size':>5s} {'seed':>4s} {'target':>7s} {'joint':>7s} {'full':>7s} {'head':>7s} {'scratch':>7s}  "
          "(test MAE, eV/atom; sequential from benchmarks/hifi_eform)")
    for r in sorted(rows, key=lambda r: (r["size"], r["seed"])):
        for f in HIGHER:
            path = HERE / "hifi_eform" / f"{COLUMNS[f]}_results.json"
            seq = {s["strategy"]: s for s in (json.loads(path.read_text()) if path.is_file() else [])
                   if s["size"] == r["labels"][f] and s["seed"] == r["seed"]}
            cells = [f"{seq[s]['test_mae']:7.3f}" if s in seq else f"{'-':>7s}" for s in ("full", "head", "scratch")]
            print(f"{r['size']:5d} {r['seed']:4d} {f:>7s} {r['test_mae'][f]:7.3f} {' '.join(cells)}")


if __name__ == "__main__":
    main()
