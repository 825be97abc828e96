"""Cross-functional transfer: from a PBE model to a better functional or to measured values.

Targets: HSE / GLLB-SC / SCAN band gaps (``mp_gap.jsonl.gz``), r2SCAN and measured formation
enthalpies (``e_form_r2scan``, ``e_form_exp`` in ``hifi_eform.jsonl.gz``) and measured band gaps
(``gap_exp`` in ``exp_gap.jsonl.gz``), each on its file's fixed split.

For each training-set size (nested subsets of the fixed training split) and each strategy
(``scratch``: no transfer; ``head``: only the regression head of the PBE model trains; ``full``: all
weights of the PBE model train), it trains on the high-fidelity labels and reports the MAE on the
fixed test split. With ``--save`` it also saves the ``full`` model trained on the largest size with
a model card (this is how ``CGAT-HSE-BandGap`` is made). Runs are resumable (each in its own folder).

    python examples/cross_functional.py --parent runs/models/CGAT-PBE-BandGap --target gap_hse \\
        --sizes 300 1000 --epochs 20 --save runs/models/CGAT-HSE-BandGap
    python examples/cross_functional.py --parent CGAT-PBE-Eform --target e_form_exp --sizes 100 300 0 \\
        --seeds 0 1 2 --runs runs/exp_eform

Every row also records the yardsticks of its target (r2SCAN and MP GGA for measured enthalpies,
HSE06 / TB-mBJ / PBE for measured gaps, ...) on the same test crystals, and the model's MAE on
exactly the crystals where each yardstick is known (``<target>_yardsticks.json``).

Recipe defaults (see README, "Cross-functional fine-tuning"): re-fit the target normalisation on the
new data (``renormalize=True``); transfer at a lower peak learning rate than training from scratch;
one triangular learning-rate cycle over the run; best epoch by validation MAE.
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

import matgl
from matgl_cgat import CGAT
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import (TARGETS, DataError, default_data_dir, load_dataset, load_splits, nested_subsets,
                             split_from_file, target_info, yardstick_table, yardstick_values)
from matgl_cgat.metrics import band_gap_metrics
from matgl_cgat.training import RunFolderMismatch
from matgl_cgat.workflows import training_history



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parent", required=True, help="PBE model: a CGAT-* name or a saved folder")
    parser.add_argument("--target", default="gap_hse", choices=sorted(TARGETS))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0], help="training sizes; 0 = the whole split")
    parser.add_argument("--strategies", nargs="+", default=["scratch", "head", "full"],
                        choices=["scratch", "head", "full"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr-scratch", type=float, default=1e-3)
    parser.add_argument("--lr-transfer", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="32-true", help="32-true or bf16-mixed")
    parser.add_argument("--metal-weight", type=float, default=0.0,
                        help="gap targets: train a metal gate with the network (TrainConfig.metal_weight); a parent's "
                             "gate is trained on, a parent without one gets a new one; threshold placed on validation")
    parser.add_argument("--metal-regression", default="non-metals", choices=["all", "non-metals"],
                        help="with --metal-weight: the regression learns from every label or from non-metals only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--name", default=None, help="model name on the saved card (default: the --save folder's name)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs/cross_functional"))
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--save", type=Path, default=None, help="save the full-transfer model of the largest size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data or default_data_dir() or "")
    parent = matgl.load_model(args.parent)
    parent_name = (parent.metadata or {}).get("name", str(args.parent))

    info = target_info(args.target)
    ds = load_dataset(data_dir / info.file, args.target, cache_dir=args.graph_cache)
    parts = split_from_file(ds, data_dir / info.splits, args.target)
    train, val, test = parts["train"], parts["val"], parts["test"]
    y_test = test.labels[args.target]
    # Test crystals whose cheap-functional label the parent trained on: that is the multi-fidelity
    # premise, but a parent that has learnt those labels well can flatter transfer on this test set,
    # so every row also reports the MAE on the test crystals the parent never saw.
    parent_property = (parent.metadata or {}).get("property")
    parent_train = set()
    if isinstance(parent_property, str):  # a several-target parent has a list: no single split
        try:
            parent_train = set(load_splits(data_dir / "splits.json", parent_property)["train"])
        except DataError:  # a parent trained on another property or data set: nothing to split by
            pass
    if not parent_train:
        print(f"{parent_name}: its property {parent_property!r} has no split here; test MAE not split by overlap")
    seen_by_parent = np.array([i in parent_train for i in test.ids]) if parent_train else None
    # Every strategy is scored with the target's lower bound (0 for a gap, none for a formation energy):
    # a hull-distance parent's 0 must not bound a formation energy, and a scratch model gets the same
    # bound, so the comparison is like for like.
    floor = info.output_min
    yardstick_data = yardstick_values(data_dir, args.target, list(test.ids))
    yardsticks = yardstick_table(args.target, yardstick_data)
    args.runs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.runs / f"{args.target}_yardsticks.json", json.dumps(yardsticks, indent=2))
    for y in yardsticks:
        print(f"yardstick {y['what']}: MAE {y['mae']} on {y['n']} of the {len(test)} test crystals")
    required = {"output_min"} | ({"n_unseen"} if seen_by_parent is not None else set())
    sizes = sorted(len(train) if s <= 0 else min(s, len(train)) for s in args.sizes)
    results_path = args.runs / f"{args.target}_results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["size"], r["strategy"], r["seed"]): r for r in results}
    best_full = None
    for seed in args.seeds:
        subsets = nested_subsets(len(train), sizes, seed=seed)
        for size, rows in zip(sizes, subsets):
            for strategy in args.strategies:
                key = (size, strategy, seed)
                run_dir = args.runs / f"{args.target}_n{size}_{strategy}_s{seed}"
                recorded = done.get(key)
                # Rows from before the overlap split and the common floor were recorded are completed: a
                # finished run reloads from its folder in seconds, and the row keeps the cost recorded
                # when it ran. Without its folder, or started with other settings, the row stays as it is.
                incomplete = recorded is not None and not required <= set(recorded)
                saving = args.save and strategy == "full" and size == sizes[-1] and seed == args.seeds[0]
                if recorded and not incomplete and not saving:
                    continue
                if recorded and not (run_dir / "run.json").is_file():
                    print(f"{run_dir}: no run folder to reload; its row is left as recorded", flush=True)
                    continue
                torch.manual_seed(seed)  # scratch weights depend on the seed only: an interrupted run resumes
                source = CGAT.from_preset((parent.metadata or {}).get("preset", "small")) if strategy == "scratch" \
                    else parent
                t0, cpu0 = time.time(), time.process_time()
                try:
                    model = source.finetune(train.subset(rows), val, policy="full" if strategy != "head" else "head",
                                            renormalize=True, epochs=args.epochs,
                                            lr=args.lr_scratch if strategy == "scratch" else args.lr_transfer,
                                            period=args.epochs, batch_size=args.batch_size, out_dir=run_dir,
                                            seed=seed, precision=args.precision,
                                            **({"metal_weight": args.metal_weight,
                                                "metal_regression": args.metal_regression}
                                               if args.metal_weight else {}))
                except RunFolderMismatch as exc:
                    if recorded is None:
                        raise
                    print(f"{run_dir}: not reloaded ({exc}); its row is left as recorded", flush=True)
                    continue
                model.set_output_min(floor)  # inference only, so the run folder stays the same
                pred = np.asarray(model.predict_dataset(test), dtype=float).ravel()
                errors = np.abs(pred - y_test)
                mae = float(errors.mean())
                row = {"target": args.target, "size": size, "strategy": strategy, "seed": seed, "test_mae": mae,
                       "best_val_mae": model.metadata["finetune"]["best_val_mae"], "seconds": round(time.time() - t0),
                       "cpu_seconds": round(time.process_time() - cpu0), "output_min": model.output_min,
                       "test_mae_where_known": {y["column"]: y["mae_model"] for y in
                                                yardstick_table(args.target, yardstick_data, {"model": pred})}}
                if getattr(model, "metal_head", None) is not None:
                    row["test_metal"] = band_gap_metrics(y_test, pred)
                if seen_by_parent is not None:
                    row.update({f"test_mae_{k}": float(errors[m].mean()) if m.any() else None
                                for k, m in (("seen", seen_by_parent), ("unseen", ~seen_by_parent))})
                    row.update({"n_seen": int(seen_by_parent.sum()), "n_unseen": int((~seen_by_parent).sum())})
                print(json.dumps(row), flush=True)
                if recorded is None:
                    results.append(row)
                    done[key] = recorded = row
                else:  # a reloaded run: same weights, so the recorded cost and timings stand
                    recorded.update({k: v for k, v in row.items() if k not in ("seconds", "cpu_seconds")})
                # the run's cost as recorded when it ran: process CPU time, or 2 threads x wall time for
                # rows from before CPU time was recorded
                cpu_hours = recorded.get("cpu_seconds", 2 * recorded["seconds"]) / 3600
                args.runs.mkdir(parents=True, exist_ok=True)
                atomic_write_text(results_path, json.dumps(results, indent=2))
                if strategy == "full" and size == sizes[-1] and seed == args.seeds[0]:
                    best_full = (model, mae, cpu_hours, recorded, pred)

    print(f"\n{args.target}: test MAE (eV) on {len(test)} structures, mean over seeds")
    print(f"{'size':>6s} " + " ".join(f"{s:>9s}" for s in args.strategies))
    for size in sizes:
        cells = []
        for strategy in args.strategies:
            vals = [r["test_mae"] for r in results if r["size"] == size and r["strategy"] == strategy]
            cells.append(f"{np.mean(vals):9.4f}" if vals else f"{'-':>9s}")
        print(f"{size:6d} " + " ".join(cells))

    if args.save and best_full is not None:
        model, mae, cpu_hours, row, pred = best_full
        name = args.name or args.save.name
        scratch = [r["test_mae"] for r in results if r["size"] == sizes[-1] and r["strategy"] == "scratch"
                   and r["seed"] == args.seeds[0]]
        y_train = train.labels[args.target]
        record = model.metadata["finetune"]
        history = training_history(parent.metadata, name, {
            "what": f"all weights of {parent_name} on {sizes[-1]} {info.functional} labels: "
                    f"one {args.epochs}-epoch cycle peaking at {args.lr_transfer:g} ({args.precision}); "
                    f"best epoch {record['best_epoch']}",
            "best_val_mae": record["best_val_mae"], "test_mae": mae, "cpu_hours_measured": round(cpu_hours, 3)})
        model.metadata = {
            "name": name,
            "property": args.target,
            "units": info.units,
            "functional": info.functional,
            "meaning": info.meaning,
            "data": f"{info.file} of the shared mp_gap data (Materials Project structures), see shared/data/mp_gap/README.md",
            "split": f"{info.splits}[{args.target!r}]: train {sizes[-1]} of {len(train)}, val {len(val)}, test {len(test)}",
            "preset": (parent.metadata or {}).get("preset", "small"),
            "parent": parent_name,
            "policy": "full",
            "output_min": model.output_min,  # inherited from the parent (a gap model's 0) unless changed
            "training": {k: record[k] for k in ("epochs", "lr", "period", "best_epoch", "best_val_mae", "seed",
                                                "renormalize")},
            "test_mae": mae,
            "test_mae_from_scratch": scratch[0] if scratch else None,
            "from_scratch_settings": f"same preset, data, epochs and one-cycle schedule; peak lr {args.lr_scratch:g} "
                                     f"(transfer: {args.lr_transfer:g})",
            "test_mae_predicting_train_median": float(np.abs(np.median(y_train) - y_test).mean()),
            "test_yardsticks": yardstick_table(args.target, yardstick_data, {"this_model": pred}),
            "command": "python examples/cross_functional.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "domain": model.metadata.get("domain"),
            **history,
        }
        if row.get("n_unseen") is not None:  # the figure to expect on new crystals sits beside the headline
            model.metadata["test_mae_split_by_parent_overlap"] = {
                "seen_by_parent": {"n": row["n_seen"], "mae": row["test_mae_seen"]},
                "not_seen_by_parent": {"n": row["n_unseen"], "mae": row["test_mae_unseen"]},
                "why": f"{row['n_seen']} of the {len(test)} test crystals are in {parent_name}'s training split; "
                       "expect the unseen figure on new crystals"}
        if getattr(model, "metal_head", None) is not None:  # trained with the network: how, where, and how well
            model.metadata["metal_gate"] = {**record["metal_gate"], "metal_below_eV": model.metal_below,
                                            "test_after": row.get("test_metal"),
                                            "parent_gate": bool(getattr(parent, "metal_head", None) is not None)}
        model.save(args.save)
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
