"""Give a band-gap CGAT an explicit metal-or-not decision, choosing the design by measurement.

Three designs are fitted and compared on the validation split (the test split only reports):

* ``gate``: a metal gate (:func:`matgl_cgat.gate.fit_metal_gate`) on the network as trained; the
  regression is unchanged, so a non-metal it pulled towards 0 eV stays there.
* ``hurdle``: first the regression is fine-tuned (all weights, warm start) on the non-metal labels
  alone, so it never learns to hedge towards 0 eV, then a gate is fitted on that network.
* ``joint``: all weights are fine-tuned (warm start) with a metal-versus-non-metal cross-entropy on a
  gate added to the loss (``TrainConfig.metal_weight``), so the representation itself learns to
  separate metals; the regression learns from every label (``--joint-regression all``) or from the
  non-metals alone (``non-metals``: the hurdle, trained jointly). The threshold is placed on validation.

The one with fewer validation errors (insulators called metals plus metals given a gap, as rates;
ties by validation MAE) is kept, its uncertainty head refitted to the gated answers, and the model
card records both designs' validation and test figures, before and after, and the check against
measured gaps (``exp_gap.jsonl.gz``: crystals measured at 0.5 eV or more called metals). Works for
single-fidelity gap models and for the multi-fidelity one (one logit per fidelity). The saved model
has no uncertainty head (the old one was fitted to ungated answers): fit it next with
``examples/fit_uncertainty.py --model FOLDER --save FOLDER``, which sees the gated answers.

    python examples/gate_gap_models.py --model CGAT-HSE-BandGap --hurdle-epochs 8 --save runs/models/gated/CGAT-HSE-BandGap
    python examples/gate_gap_models.py --model CGAT-PBE-BandGap --hurdle-epochs 3 --save runs/models/gated/CGAT-PBE-BandGap
    python examples/gate_gap_models.py --model CGAT-PBE-BandGap --designs joint --joint-epochs 4 --save runs/models/joint/CGAT-PBE-BandGap

Every design's test figures include the trade-off along its gate: the two error rates at each
threshold (``trade_off``), so whether any threshold meets a pair of bars is read off, not guessed.
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
from matgl_cgat.data import default_data_dir, load_dataset, split_from_file, split_per_target, target_info
from matgl_cgat.gate import METAL_BELOW, choose_gate_threshold, fit_metal_gate, threshold_trade_off
from matgl_cgat.metrics import band_gap_metrics
from matgl_cgat.uncertainty import label_columns


def gap_figures(model, dataset, columns: list[str]) -> dict:
    """``{column: band_gap_metrics + mae}`` of a model's answers on a dataset, per output with labels.

    ``columns`` are the dataset's label columns, matched to the model's outputs in order: a
    measured-gap model's one output is scored against HSE labels this way.
    """
    pred = np.asarray(model.predict_dataset(dataset), dtype=float).reshape(len(dataset), -1)
    out = {}
    for j, column in enumerate(columns):
        y = np.asarray(dataset.labels[column], dtype=float)
        have = np.isfinite(y)
        if have.sum() >= 2:
            m = band_gap_metrics(y[have], pred[have, j], metal_threshold=METAL_BELOW)
            out[column] = {"n": int(have.sum()), "mae": float(np.abs(pred[have, j] - y[have]).mean()), **m}
    return out


def measured_figures(model, exp, columns: list[str]) -> dict:
    """Each output against measured gaps: MAE and the share of crystals measured at 0.5 eV or more
    that the output calls metals (below 0.1 eV)."""
    pred = np.asarray(model.predict_dataset(exp), dtype=float).reshape(len(exp), -1)
    y = np.asarray(exp.labels["gap_exp"], dtype=float)
    insulator = y >= 0.5
    return {column: {"n": len(y), "mae": float(np.abs(pred[:, j] - y).mean()),
                     "n_insulators": int(insulator.sum()),
                     "insulators_called_metals": float((pred[insulator, j] < METAL_BELOW).mean())}
            for j, column in enumerate(columns)}


def score(metrics: dict) -> tuple[float, float]:
    """Validation key of a design: summed error rates over the outputs, then the mean MAE."""
    rates = [v for m in metrics.values() for v in (m["insulators_called_metals"], m["metals_given_gap"])
             if np.isfinite(v)]
    return round(float(sum(rates)), 12), float(np.mean([m["mae"] for m in metrics.values()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a gap model: shipped name or folder")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--designs", nargs="+", default=["gate", "hurdle"], choices=["gate", "hurdle", "joint"])
    parser.add_argument("--gate-labels", default=None, metavar="COLUMN",
                        help="fit the gate on this mp_gap column's split instead of the model's own labels (for a "
                             "model of measured gaps, whose data holds no metals: e.g. gap_hse); only the gate design")
    parser.add_argument("--hurdle-epochs", type=int, default=4)
    parser.add_argument("--hurdle-lr", type=float, default=2e-4)
    parser.add_argument("--joint-epochs", type=int, default=4)
    parser.add_argument("--joint-lr", type=float, default=2e-4)
    parser.add_argument("--metal-weight", type=float, default=1.0,
                        help="joint design: weight of the metal cross-entropy beside the (normalised) L1 regression")
    parser.add_argument("--joint-regression", default="non-metals", choices=["all", "non-metals"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=Path("runs/gate"))
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data or default_data_dir() or "")
    if not (data_dir / "mp_gap.jsonl.gz").is_file():
        raise SystemExit(f"{data_dir}: no mp_gap.jsonl.gz; pass --data")
    model = matgl.load_model(args.model)
    name = (model.metadata or {}).get("name", str(args.model))
    columns = label_columns(model)
    exp = load_dataset(data_dir / "exp_gap.jsonl.gz", "gap_exp", cache_dir=args.graph_cache)
    own_test = None
    if args.gate_labels:  # the gate learns metals from a DFT column; the model's own test split reports too
        if args.designs != ["gate"]:
            parser.error("--gate-labels fits the gate design only: pass --designs gate")
        info = target_info(columns[0])
        own = load_dataset(data_dir / info.file, columns[0], cache_dir=args.graph_cache)
        own_test = split_from_file(own, data_dir / info.splits, columns[0]).test
        gate_columns = [args.gate_labels]
    else:
        gate_columns = columns
    ds = load_dataset(data_dir / "mp_gap.jsonl.gz", gate_columns, require="any", cache_dir=args.graph_cache)
    parts = split_per_target(ds.with_targets(gate_columns), data_dir / "splits.json", gate_columns)
    report_path = args.runs / f"{name}_gate.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report.setdefault("model", name)
    t0, cpu0 = time.time(), time.process_time()

    def figures(m) -> dict:
        out = {"val": gap_figures(m, parts.val, gate_columns), "test": gap_figures(m, parts.test, gate_columns),
               "measured": measured_figures(m, exp, columns)}
        if own_test is not None:
            out["own_test"] = gap_figures(m, own_test, columns)
        return out

    if "before" not in report:
        report["before"] = figures(model)
        atomic_write_text(report_path, json.dumps(report, indent=2))
    print("before", json.dumps(report["before"]["test"]), flush=True)

    candidates = {}
    for design in args.designs:
        network = model
        if design == "hurdle":
            nonmetal = {c: [i for i, y in zip(parts.train.ids, parts.train.labels[c]) if np.isfinite(y) and y >= METAL_BELOW]
                        for c in columns}
            nonmetal_val = {c: [i for i, y in zip(parts.val.ids, parts.val.labels[c]) if np.isfinite(y) and y >= METAL_BELOW]
                            for c in columns}
            network = model.finetune(parts.train.keeping_labels(nonmetal), parts.val.keeping_labels(nonmetal_val),
                                     policy="full", renormalize=False, output_min=0.0, epochs=args.hurdle_epochs,
                                     lr=args.hurdle_lr, period=args.hurdle_epochs, batch_size=args.batch_size,
                                     seed=args.seed, precision=args.precision, out_dir=args.runs / f"{name}_hurdle")
        if design == "joint":
            network = model.finetune(parts.train, parts.val, policy="full", renormalize=False, output_min=0.0,
                                     epochs=args.joint_epochs, lr=args.joint_lr, period=args.joint_epochs,
                                     batch_size=args.batch_size, seed=args.seed, precision=args.precision,
                                     metal_weight=args.metal_weight, metal_regression=args.joint_regression,
                                     metal_below=METAL_BELOW, out_dir=args.runs / f"{name}_joint")
            fit = choose_gate_threshold(network, parts.val, target=gate_columns, metal_below=METAL_BELOW)
        else:
            fit = fit_metal_gate(network, parts.train, parts.val, target=gate_columns, seed=args.seed)
        candidates[design] = fit.model
        report[design] = {"threshold_logit": fit.threshold, "n_train": fit.n_train, "n_train_metals": fit.n_train_metals,
                          "gate_labels": gate_columns, **figures(fit.model)}
        report[design]["test_trade_off"] = threshold_trade_off(fit.model, parts.test, target=gate_columns)
        if design in ("hurdle", "joint"):
            report[design]["training"] = {k: network.metadata["finetune"][k] for k in
                                          ("epochs", "lr", "best_epoch", "best_val_mae") if k in network.metadata["finetune"]}
        atomic_write_text(report_path, json.dumps(report, indent=2))
        print(design, "val", json.dumps(report[design]["val"]), flush=True)
        print(design, "test", json.dumps(report[design]["test"]), flush=True)
        print(design, "measured", json.dumps(report[design]["measured"]), flush=True)

    chosen = min(candidates, key=lambda d: score(report[d]["val"]))
    report["chosen"] = chosen
    report["chosen_by"] = "validation: fewest insulators called metals plus metals given a gap (rates), then MAE"
    atomic_write_text(report_path, json.dumps(report, indent=2))
    print(f"chosen on validation: {chosen}", flush=True)
    if not args.save:
        return
    gated = candidates[chosen]
    gated.set_sigma_head(None)  # fitted to ungated answers (or gone with the hurdle's fine-tune): refit it next
    card = dict(model.metadata or {})
    test_after = report[chosen]["test"]
    card["metal_gate"] = {
        "design": {"gate": "a metal gate on the network as trained (regression unchanged)",
                   "hurdle": f"the regression fine-tuned on non-metal labels alone ({args.hurdle_epochs} epochs, "
                             f"peak lr {args.hurdle_lr:g}), then a metal gate on that network",
                   "joint": f"all weights fine-tuned with a metal cross-entropy (weight {args.metal_weight:g}) beside "
                            f"the regression on {args.joint_regression} labels ({args.joint_epochs} epochs, peak lr "
                            f"{args.joint_lr:g}); threshold placed on validation"}[chosen],
        "chosen_by": report["chosen_by"],
        "metal_below_eV": METAL_BELOW,
        "threshold_logit": report[chosen]["threshold_logit"],
        "test_before": report["before"]["test"],
        "test_after": test_after,
        "measured_before": report["before"]["measured"],
        "measured_after": report[chosen]["measured"],
        "designs_compared": {d: {"val": report[d]["val"], "test": report[d]["test"]} for d in candidates},
        "test_trade_off": report[chosen]["test_trade_off"],
        "cpu_hours_measured": round((time.process_time() - cpu0) / 3600, 3),
        "command": "python examples/gate_gap_models.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    if own_test is not None:  # the card's headline stays the model's own test split
        card["metal_gate"]["gate_labels"] = f"{args.gate_labels} (splits.json train/val; the model's own data has no metals)"
        card["metal_gate"]["own_test_before"] = report["before"]["own_test"]
        card["metal_gate"]["own_test_after"] = report[chosen]["own_test"]
        card["test_mae_before_gate"] = card.get("test_mae")
        card["test_mae"] = report[chosen]["own_test"][columns[0]]["mae"]
    elif isinstance(card.get("test_mae"), dict):  # a multi-fidelity card: one entry per fidelity
        card["test_mae_before_gate"] = card["test_mae"]
        fid = {c: f for f, c in (card.get("label_columns") or {}).items()}
        card["test_mae"] = {fid.get(c, c): {"n": v["n"], "mae": v["mae"]} for c, v in test_after.items()}
    else:
        card["test_mae_before_gate"] = card.get("test_mae")
        card["test_mae"] = test_after[columns[0]]["mae"]
    gated.metadata = card  # the domain stays the parent's: the gate and regression serve its crystals
    gated.save(args.save)
    print(f"saved {args.save} ({chosen}); {round(time.time() - t0)} s")


if __name__ == "__main__":
    main()
