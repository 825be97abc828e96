"""Which CGAT size learns most per CPU minute here: presets trained for equal wall time, side by side.

Why: every shipped model uses the ``small`` preset, chosen for its speed (RESULTS.md, issue #2), not
for the accuracy it reaches per unit of compute. A wider model learns more per epoch but runs fewer
epochs in the same time; a narrower one the reverse. Issue #12 asks for this multiplier to be
measured rather than assumed before more CPU hours go into one size.

How, on an otherwise idle machine (run the candidates one after another, never side by side):
seeded random ``--n-train`` / ``--n-val`` structures of the fixed ``e_form_pbe`` train / val splits;
for each candidate, a short probe measures its training throughput (forward, loss, backward, AdamW
step on the first batches, bf16 autocast as in the run), which fixes how many whole epochs fit in
``--minutes``; then one triangular learning-rate cycle over those epochs (``cpu`` recipe, peak lr
1e-3, from the same seed), best epoch by validation MAE, and the MAE on the whole fixed test split.
The probe leaves out data loading, validation and the first epoch's cache reads, so every run
overruns ``--minutes``, a small model most (its fixed per-structure costs weigh more); whole epochs
add to the difference: the result records each run's wall and CPU time and
its validation MAE after every epoch with the elapsed time, so curves can be compared at equal time.

Caveat, stated with the result: a few minutes on a few thousand structures is the early regime; a
bigger model's advantage usually grows with data and time, so a tie here leans towards the bigger one.

    DGLBACKEND=pytorch python benchmarks/preset_at_equal_time.py --cache runs/graph_cache \\
        --out benchmarks/preset_at_equal_time.json

Resumable: candidates already in ``--out`` are skipped; an interrupted run resumes from its folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_throughput import EpochClock, model_only  # noqa: E402

#: Overrides of the ``small`` preset. ``narrow`` and ``wide`` scale the widths by 3/4 and 3/2 (and
#: ``wide`` adds a fourth message-passing step), bracketing ``small`` in cost by roughly 0.6x and 2.5x.
CANDIDATES: dict[str, dict] = {
    "narrow": {"dim": 48, "edge_dim": 24, "generator_dims": (24, 24), "hyper_hidden_dims": (48,),
               "roost_dim": 48, "roost_hidden": 72, "head_dims": (192, 96, 48)},
    "small": {},
    "wide": {"dim": 96, "edge_dim": 48, "nblocks": 4, "generator_dims": (48, 48), "hyper_hidden_dims": (96,),
             "roost_dim": 96, "roost_hidden": 144, "head_dims": (384, 192, 96)},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="mp_gap folder (default: the shared one)")
    parser.add_argument("--cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=sorted(CANDIDATES))
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per candidate")
    parser.add_argument("--probe-batches", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs/preset_at_equal_time"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/preset_at_equal_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from matgl_cgat import CGAT
    from matgl_cgat._io import atomic_write_text
    from matgl_cgat.data import default_data_dir, load_dataset, split_from_file
    from matgl_cgat.training import collate_graphs, fit, recipe

    data = args.data or default_data_dir()
    if data is None:
        sys.exit("mp_gap data not found: pass --data")
    target = "e_form_pbe"
    ds = load_dataset(Path(data) / "mp_gap.jsonl.gz", target, cache_dir=args.cache, progress=False)
    parts = split_from_file(ds, Path(data) / "splits.json", target)
    pick = np.random.default_rng(0)  # the split files list ids in mat_id order: take seeded random subsets
    train = parts["train"].subset(np.sort(pick.choice(len(parts["train"]), args.n_train, replace=False)))
    val = parts["val"].subset(np.sort(pick.choice(len(parts["val"]), args.n_val, replace=False)))
    test = parts["test"]
    y = train.labels[target]

    def fresh(overrides):
        torch.manual_seed(0)
        model = CGAT.from_preset("small", **overrides)
        model.set_normalization(float(y.mean()), float(y.std()))
        return model

    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    settings = {"n_train": len(train), "n_val": len(val), "n_test": len(test), "minutes": args.minutes,
                "lr": args.lr, "precision": args.precision, "threads": args.threads}
    if record.get("settings", settings) != settings:
        sys.exit(f"{args.out} holds results for other settings ({record['settings']}); pass another --out")
    record["settings"] = settings
    rows = record.setdefault("rows", {})
    for name in args.candidates:
        if name in rows:
            print(f"{name}: done ({rows[name]['test_mae']:.4f} eV/atom)")
            continue
        overrides = CANDIDATES[name]
        config = recipe("cpu", lr=args.lr, precision=args.precision, progress=False, accelerator="cpu", devices=1)
        pending = record.setdefault("pending", {})
        if name in pending:  # an interrupted run: its epoch count must not change, or it cannot resume
            rate, epochs = pending[name]["probe_structures_per_s"], pending[name]["epochs"]
        else:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
            n_probe = min(args.probe_batches * config.batch_size, len(train))
            probe = [collate_graphs([train[i] for i in order[s : s + config.batch_size]], (target,))
                     for s in range(0, n_probe, config.batch_size)]
            rate = model_only(fresh(overrides), probe, config)
            epochs = max(1, int(args.minutes * 60 * rate // len(train)))
            pending[name] = {"probe_structures_per_s": round(rate, 1), "epochs": epochs}
            atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
        resumed = (args.runs / name / "run.json").is_file()
        model = fresh(overrides)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n_params:,} parameters, {rate:.1f} structures/s in the probe -> {epochs} epochs", flush=True)
        clock = EpochClock()
        t0, cpu0 = time.time(), time.process_time()
        fitted = fit(model.train(), train, val, config.replace(epochs=epochs, period=epochs),
                     out_dir=args.runs / name, extra_callbacks=[clock])
        wall, cpu = time.time() - t0, time.process_time() - cpu0
        pred = np.asarray(fitted.model.predict_dataset(test), dtype=float).ravel()
        test_mae = float(np.abs(pred - test.labels[target]).mean())
        elapsed = list(np.cumsum([e - s for s, e in zip(clock.starts, clock.ends)]))
        rows[name] = {
            "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
            "parameters": n_params, "probe_structures_per_s": round(rate, 1), "epochs": epochs,
            "train_wall_s": round(wall), "train_cpu_s": round(cpu),
            "timings_cover": "the resumed part only" if resumed else "the whole run",
            "val_mae_by_epoch": [round(h["val_mae"], 4) for h in fitted.history],
            "elapsed_s_by_epoch": [round(float(t)) for t in elapsed] if len(elapsed) == len(fitted.history) else None,
            "best_epoch": fitted.best_epoch, "best_val_mae": round(fitted.best_val_mae, 4),
            "test_mae": round(test_mae, 4),
        }
        pending.pop(name, None)
        record["date"] = time.strftime("%Y-%m-%d")
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
        print(f"{name}: best val {fitted.best_val_mae:.4f}, test {test_mae:.4f} eV/atom in {wall / 60:.1f} min",
              flush=True)

    print(f"\n{'candidate':>9s} {'params':>9s} {'epochs':>6s} {'minutes':>7s} {'val':>7s} {'test':>7s}")
    for name, r in rows.items():
        print(f"{name:>9s} {r['parameters']:9,d} {r['epochs']:6d} {r['train_wall_s'] / 60:7.1f} "
              f"{r['best_val_mae']:7.4f} {r['test_mae']:7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
