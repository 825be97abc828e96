"""One CGAT for three PBE properties against one CGAT per property, from scratch, at equal epochs or passes.

The question of the issue: is a multi-task PBE backbone (formation energy, hull distance and band
gap learned together, one output each) as good per property as three single-task models, and so a
3x saving? Both arms train from the same random initialisation of the ``small`` preset (``--seed``),
with the same recipe (L1 on normalised targets, AdamW, one triangular cycle, bf16-mixed), for the
same number of epochs over the same crystals. A multi-task epoch is one pass over each crystal for
all three properties (the forward pass is shared; the loss is a masked sum), so at equal epochs the
three single-task models make three times the passes; ``--epochs 1`` single-task rows against the
3-epoch multi-task row compare equal passes (a multi-task epoch also validates on three splits, so
it costs somewhat more than a single-task one: docs/results.md section 9).

Training crystals are those in the training split of all three properties and in no validation or
test split of any of them (17,243 of 35,592; the shared splits are drawn per property), so no model
here saw a test label of another property. Each property is validated and tested on its own fixed
split. Hull distances and gaps are scored with predictions clipped at 0 in both arms.

    python benchmarks/multitask_vs_single.py --task multi --epochs 3
    python benchmarks/multitask_vs_single.py --task e_form_pbe --epochs 3
    python benchmarks/multitask_vs_single.py --task e_hull_pbe --epochs 3
    python benchmarks/multitask_vs_single.py --task gap_pbe --epochs 3
    python benchmarks/multitask_vs_single.py --task e_form_pbe --epochs 1     # likewise e_hull_pbe, gap_pbe

Each call adds its row to ``benchmarks/multitask_vs_single.json`` (atomically; a finished
(task, epochs, seed) is skipped); an interrupted run resumes from its run folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from matgl_cgat import CGAT
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_dataset, load_splits, split_per_target
from matgl_cgat.metrics import per_output_mae

HERE = Path(__file__).resolve().parent
TARGETS = ("e_form_pbe", "e_hull_pbe", "gap_pbe")
CLIPPED = ("e_hull_pbe", "gap_pbe")  # non-negative properties


def clean_training_ids(splits_path: Path) -> set[str]:
    """Crystals in every property's training split and in none of their validation or test splits."""
    splits = {t: load_splits(splits_path, t) for t in TARGETS}
    train = set.intersection(*(set(s["train"]) for s in splits.values()))
    held_out = set().union(*(set(s["val"]) | set(s["test"]) for s in splits.values()))
    return train - held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=["multi", *TARGETS])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="folder with mp_gap.jsonl.gz and splits.json")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--runs", type=Path, default=Path("runs/multitask_vs_single"), help="run folders")
    parser.add_argument("--out", type=Path, default=HERE / "multitask_vs_single.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data or default_data_dir() or "")
    if not (data_dir / "mp_gap.jsonl.gz").is_file():
        raise SystemExit("mp_gap data not found: pass --data PATH")
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": []}
    key = (args.task, args.epochs, args.seed)
    if any((r["task"], r["epochs"], r["seed"]) == key for r in record["rows"]):
        print(f"{key} is already in {args.out}")
        return

    splits_path = data_dir / "splits.json"
    ds = load_dataset(data_dir / "mp_gap.jsonl.gz", list(TARGETS), require="any", cache_dir=args.graph_cache)
    ds = ds.with_targets(list(TARGETS))
    parts = split_per_target(ds, splits_path, list(TARGETS))
    clean = sorted(clean_training_ids(splits_path))
    targets = list(TARGETS) if args.task == "multi" else [args.task]
    # labels of the other properties are removed, not just ignored: a single-task run sees one column
    train = parts["train"].keeping_labels({t: (clean if t in targets else []) for t in TARGETS})
    val = parts["val"].keeping_labels({t: [] for t in TARGETS if t not in targets})
    if args.task != "multi":
        train, val = train.with_target(args.task), val.with_target(args.task)
    print(f"{args.task}: {len(train)} training crystals, {len(val)} validation crystals", flush=True)

    torch.manual_seed(args.seed)
    model = CGAT.from_preset("small", ntargets=len(targets))
    t0 = time.time()
    tuned = model.finetune(train, val, policy="full", renormalize=True, output_min=None, epochs=args.epochs,
                           lr=args.lr, period=args.epochs, batch_size=args.batch_size, seed=args.seed,
                           precision=args.precision, out_dir=args.runs / f"{args.task}_e{args.epochs}_s{args.seed}")
    seconds = round(time.time() - t0)
    maes = per_output_mae(tuned.predict_dataset(parts["test"]), {t: parts["test"].labels[t] for t in targets},
                          floors={t: 0.0 for t in targets if t in CLIPPED})
    test = {t: {"n": m["n"], "mae": round(m["mae"], 4)} for t, m in maes.items()}
    record["rows"].append({"task": args.task, "epochs": args.epochs, "seed": args.seed, "lr": args.lr,
                           "precision": args.precision, "train_crystals": len(train), "seconds": seconds,
                           "best_epoch": tuned.metadata["finetune"]["best_epoch"], "test": test})
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"{args.task}: " + ", ".join(f"{t} {v['mae']:.4f}" for t, v in test.items()) + f" ({seconds} s)")


if __name__ == "__main__":
    main()
