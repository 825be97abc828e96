"""Add a functional to a trained multi-fidelity CGAT and measure what the old functionals lose.

The case the issue describes: a model trained on PBE, HSE and GLLB-SC gaps (``train_multifidelity.py
--without scan``) is later given the 248 SCAN training gaps. ``add_fidelity`` appends a SCAN output
that starts from another fidelity's conditioning (``--start-from``), and the fine-tune either trains
that fidelity's scale and shift alone (``--policy fidelity:scan``: the other outputs cannot move) or
every weight (``--policy full``: the shared network adapts to SCAN, and may forget the others, which
see no labels in this training set). Every fidelity is scored on its own fixed test split before and
after, so forgetting is a measured number, not a promise.

    python examples/train_multifidelity.py --without scan --epochs 4 --lr 5e-4 --precision bf16-mixed \\
        --name CGAT-MF-noSCAN --run runs/mf-noscan --save runs/models/CGAT-MF-noSCAN
    python examples/add_fidelity.py --model runs/models/CGAT-MF-noSCAN --fidelity scan --policy fidelity:scan \\
        --out benchmarks/add_fidelity.json
    python examples/add_fidelity.py --model runs/models/CGAT-MF-noSCAN --fidelity scan --policy full \\
        --out benchmarks/add_fidelity.json

Each call adds (or replaces) its policy's entry in ``--out``, written atomically.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import matgl
import numpy as np
import torch

import matgl_cgat  # noqa: F401  (shipped names for matgl.load_model)
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_dataset, split_per_target
from matgl_cgat.metrics import per_output_mae
from matgl_cgat.transfer import add_fidelity

#: fidelity name -> label column of the shared data
COLUMNS = {"pbe": "gap_pbe", "hse": "gap_hse", "gllbsc": "gap_gllbsc", "scan": "gap_scan"}


def test_maes(model, test, columns: dict[str, str]) -> dict[str, dict]:
    """Each fidelity's MAE on its own test labels (rows where it has one)."""
    maes = per_output_mae(model.predict_dataset(test), {f: test.labels[c] for f, c in columns.items()})
    return {f: {"n": m["n"], "mae": round(m["mae"], 4)} for f, m in maes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="multi-fidelity model without the new fidelity")
    parser.add_argument("--fidelity", default="scan", choices=sorted(COLUMNS))
    parser.add_argument("--start-from", default="hse", help="existing fidelity whose conditioning the new one copies")
    parser.add_argument("--policy", default=None, help="fidelity:NAME (default) or full, head, ...")
    parser.add_argument("--epochs", type=int, default=None, help="default: 40 for fidelity:NAME, 10 otherwise")
    parser.add_argument("--lr", type=float, default=None, help="peak LR (default: 3e-3 for fidelity:NAME, 3e-4)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="folder with mp_gap.jsonl.gz and splits.json")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--run", type=Path, default=None, help="run folder (default runs/add-<fidelity>-<policy>)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/add_fidelity.json"))
    parser.add_argument("--save", type=Path, default=None, help="also save the extended model here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy = args.policy or f"fidelity:{args.fidelity}"
    one_fidelity = policy.startswith("fidelity:")
    epochs = args.epochs or (40 if one_fidelity else 10)
    lr = args.lr or (3e-3 if one_fidelity else 3e-4)
    data_dir = args.data or default_data_dir()
    if data_dir is None:
        raise SystemExit("mp_gap data not found: pass --data PATH")

    base = matgl.load_model(str(args.model))
    old = list(getattr(base, "fidelities", None) or ())
    if not old:
        raise SystemExit(f"{args.model} is not a multi-fidelity model")
    if args.fidelity.lower() in (f.lower() for f in old):
        raise SystemExit(f"{args.model} already has fidelity {args.fidelity!r}")
    base.fidelity_index(args.start_from)  # an unknown name is an error naming the model's fidelities
    card_columns = (base.metadata or {}).get("label_columns") or {}
    columns = {f: card_columns.get(f, COLUMNS.get(f, f)) for f in old}
    columns[args.fidelity] = COLUMNS[args.fidelity]
    ds = load_dataset(Path(data_dir) / "mp_gap.jsonl.gz", list(columns.values()), require="any",
                      cache_dir=args.graph_cache).with_targets(list(columns.values()))
    parts = split_per_target(ds, Path(data_dir) / "splits.json", list(columns.values()))
    new_column = columns[args.fidelity]
    # the fine-tune sees the new fidelity's labels alone: the old ones are NaN in its training and
    # validation sets, as they would be for a user who has only the new functional's data at hand
    only_new = {c: [] for f, c in columns.items() if f != args.fidelity}
    train, val = parts["train"].keeping_labels(only_new), parts["val"].keeping_labels(only_new)
    y = np.asarray(train.labels[new_column], dtype=float)
    y = y[np.isfinite(y)]
    print(f"{args.fidelity}: {len(train)} training, {len(val)} validation structures")

    before = test_maes(base, parts["test"], {f: c for f, c in columns.items() if f != args.fidelity})
    extended = add_fidelity(base, args.fidelity, float(y.mean()), float(y.std()), start_from=args.start_from,
                            label_column=new_column)
    start = test_maes(extended, parts["test"], columns)
    t0 = time.time()
    tuned = extended.finetune(train, val, policy=policy, renormalize=False, output_min=0.0, epochs=epochs, lr=lr,
                              period=epochs, batch_size=args.batch_size, seed=args.seed,
                              out_dir=args.run or Path("runs") / f"add-{args.fidelity}-{policy.replace(':', '')}")
    seconds = round(time.time() - t0)
    after = test_maes(tuned, parts["test"], columns)
    entry = {
        "model": str(args.model), "fidelity": args.fidelity, "start_from": args.start_from, "policy": policy,
        "epochs": epochs, "lr": lr, "seed": args.seed, "train_n": int(len(y)), "seconds": seconds,
        "best_epoch": tuned.metadata["finetune"]["best_epoch"],
        "test_mae_before": before, "test_mae_at_start": start, "test_mae_after": after,
        "command": "python examples/add_fidelity.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    record[policy] = entry
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    for f in columns:
        b = before.get(f, {}).get("mae")
        print(f"{f:>7s}: before {b if b is not None else '-':>7}  start {start[f]['mae']:.4f}  "
              f"after {after[f]['mae']:.4f} eV (n={after[f]['n']})")
    if args.save:
        tuned.metadata["name"] = tuned.metadata.get("name") or args.save.name
        tuned.save(args.save)
        print(f"saved to {args.save}")


if __name__ == "__main__":
    main()
