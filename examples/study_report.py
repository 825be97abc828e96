"""Figures and markdown tables of the transfer-learning study, from finished study folders.

Reads the learning-curve folders written by ``mgl-cgat scaling run`` (and, if present, the outputs
of ``examples/compare_models.py`` and ``examples/pretrain_size_curve.py``), and writes into
``--figures``: a log-log scaling plot with fits per study, training curves by epoch (the cyclic
learning rate is on the right axis) and parity plots for the largest training set, and the
budget plan. The markdown tables go to ``--tables`` (they are what ``docs/results.md`` quotes).

    python examples/study_report.py --study runs/study --figures docs/figures --tables docs/study_tables.md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from matgl_cgat._io import atomic_write_text
from matgl_cgat.plots import plot_budget, plot_parity, plot_scaling, plot_training_curve
from matgl_cgat.scaling import data_equivalents, fit_results, load_results, plan_budget, summarize

STUDIES = {
    "pbe_gap_to_hse": "PBE gap -> HSE gap",
    "pbe_gap_to_gllbsc": "PBE gap -> GLLB-SC gap",
    "pbe_gap_to_scan": "PBE gap -> SCAN gap (few-shot)",
    "pbe_eform_to_hse": "PBE formation energy -> HSE gap (inter-property)",
}
ORDER = {"scratch": 0, "head": 1, "full": 2}
#: the split whose training part each study's parent model was trained on
PARENT_SPLIT = {"pbe_gap_to_hse": "gap_pbe", "pbe_gap_to_gllbsc": "gap_pbe", "pbe_gap_to_scan": "gap_pbe",
                "pbe_eform_to_hse": "e_form_pbe"}


def _fmt(x, digits=3):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _study_table(rows: list[dict]) -> list[str]:
    out = ["| N train | strategy | seeds | test MAE (eV) | MAE non-metals (eV) | metal/non-metal accuracy | R² |",
           "|---:|---|---:|---|---|---|---|"]
    mae = {(s["strategy"], s["size"]): s for s in summarize(rows, "test_mae")}
    for (strategy, size) in sorted(mae, key=lambda k: (k[1], ORDER.get(k[0], 9))):
        sel = [r for r in rows if r["strategy"] == strategy and r["size"] == size]
        m = mae[(strategy, size)]

        def mean(key, sel=sel):
            vals = [float(r[key]) for r in sel if r.get(key) not in (None, "")]
            return float(np.mean(vals)) if vals else None

        out.append(f"| {size} | {strategy} | {m['n_seeds']} | {m['mean']:.3f} ± {m['std']:.3f} | "
                   f"{_fmt(mean('test_mae_nonmetals'))} | {_fmt(mean('test_metal_accuracy'))} | "
                   f"{_fmt(mean('test_r2'))} |")
    return out


def _fit_table(fits: dict) -> list[str]:
    out = ["| strategy | a | b (± bootstrap sd) | R² of the log-log line | sizes fitted |", "|---|---|---|---|---|"]
    for name, fit in sorted(fits.items(), key=lambda kv: ORDER.get(kv[0], 9)):
        out.append(f"| {name} | {fit.a:.3g} | {fit.b:.3f} ± {fit.b_err:.3f} | {fit.r2_log:.3f} | "
                   f"{', '.join(str(int(s)) for s in fit.sizes)} |")
    for name, eq in data_equivalents(fits, "scratch", ci=0.68).items():
        if "error" in eq:
            out.append(f"\nData-equivalent size for `{name}`: not defined ({eq['error']}).")
            continue
        reach = eq["extrapolation"]
        caveat = (f" This extrapolates the no-transfer line {reach:.0f}x beyond its largest measured size: "
                  "an order of magnitude at best." if reach > 3 else "")
        out.append(f"\nData-equivalent size: no transfer would need about **{eq['needs']:,.0f}** structures "
                   f"(68% bootstrap interval {eq['ci'][0]:,.0f}–{eq['ci'][1]:,.0f}) to match `{name}` with "
                   f"{int(eq['size']):,}.{caveat}")
    return out


def _overlap_table(path: Path, parent_train: set, size: int) -> list[str]:
    """Test MAE on test structures the parent did / did not see (with its cheap label) in pre-training."""
    out = ["| strategy | test structures in the parent's training split: MAE (n) | not in it: MAE (n) |",
           "|---|---|---|"]
    for strategy in ("scratch", "head", "full"):
        errs = {True: [], False: []}
        for run in sorted((path / "runs").glob(f"{strategy}_n{size}_s*")):
            if not (run / "test_predictions.csv").is_file():  # a run still in progress
                continue
            with open(run / "test_predictions.csv", newline="") as f:
                for r in csv.DictReader(f):
                    errs[r["id"] in parent_train].append(abs(float(r["y_true"]) - float(r["y_pred"])))
        if errs[True] or errs[False]:
            seen, unseen = errs[True], errs[False]
            out.append(f"| {strategy} | {_fmt(float(np.mean(seen)) if seen else None)} ({len(seen)}) | "
                       f"{_fmt(float(np.mean(unseen)) if unseen else None)} ({len(unseen)}) |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="folder holding the study folders")
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    parser.add_argument("--tables", type=Path, default=Path("docs/study_tables.md"))
    parser.add_argument("--splits", type=Path, default=None, help="splits.json of the data (for the overlap table)")
    parser.add_argument("--cost-ratios", type=float, nargs="+", default=[5, 50])
    args = parser.parse_args()
    md: list[str] = ["<!-- written by examples/study_report.py; do not edit by hand -->"]
    fits_by_study = {}
    for folder, title in STUDIES.items():
        path = args.study / folder
        if not (path / "results.json").is_file():
            continue
        rows = load_results(path)
        fits = fit_results(rows)
        fits_by_study[folder] = fits
        target = rows[0]["target"]
        plot_scaling(rows, args.figures / f"scaling_{folder}.png", fits=fits, title=title,
                     ylabel=f"{target} test MAE (eV)")
        md += [f"\n### {title}\n", f"![scaling](figures/scaling_{folder}.png)\n", *_study_table(rows), "",
               *_fit_table(fits)]
        biggest = max(r["size"] for r in rows)
        if args.splits is not None and args.splits.is_file():
            parent_train = set(json.loads(args.splits.read_text())[PARENT_SPLIT[folder]]["train"])
            md += ["", f"Test MAE (eV) at N = {biggest}, pooled over seeds, split by whether the parent model saw "
                   f"the test structure (with its {PARENT_SPLIT[folder]} label) in pre-training:\n",
                   *_overlap_table(path, parent_train, biggest)]
        for strategy in ("scratch", "full"):
            run = path / "runs" / f"{strategy}_n{biggest}_s0"
            if (run / "metrics.csv").is_file():
                plot_training_curve(run / "metrics.csv", args.figures / f"epochs_{folder}_{strategy}.png",
                                    title=f"{title}: {strategy}, N = {biggest}, seed 0")
            if (run / "test_predictions.csv").is_file():
                with open(run / "test_predictions.csv", newline="") as f:
                    pred = list(csv.DictReader(f))
                plot_parity([float(r["y_true"]) for r in pred], [float(r["y_pred"]) for r in pred],
                            args.figures / f"parity_{folder}_{strategy}.png",
                            title=f"{title}: {strategy}, N = {biggest}", units="eV")

    compare = args.study / "compare_gap_hse" / "comparison.json"
    if compare.is_file():
        doc = json.loads(compare.read_text())
        st = doc["settings"]
        md += ["\n### CGAT vs M3GNet vs MEGNet, same CPU time\n",
               f"{st['target']}, train/val/test {st['sizes']['train']}/{st['sizes']['val']}/{st['sizes']['test']}, "
               f"{st['minutes']:g} min of training per model on {st['threads']} threads, AdamW lr {st['lr']:g}, "
               f"batch {st['batch_size']}, best-validation weights.\n",
               "| model | parameters | epochs in budget | test MAE (eV) | RMSE | R² | MAE non-metals | metal accuracy |",
               "|---|---:|---:|---|---|---|---|---|"]
        results = doc["results"].values() if isinstance(doc["results"], dict) else doc["results"]
        for r in results:
            t = r["test"]
            md.append(f"| {r.get('label', r['model'])} | {r['parameters']:,} | {_fmt(r.get('epochs'), 1)} | "
                      f"{_fmt(t['mae'])} | {_fmt(t['rmse'])} | {_fmt(t['r2'])} | {_fmt(t.get('mae_nonmetals'))} | "
                      f"{_fmt(t.get('metal_accuracy'))} |")
        t = doc["median_baseline"]["test"]
        md.append(f"| training median | - | - | {_fmt(t['mae'])} | {_fmt(t['rmse'])} | {_fmt(t['r2'])} | "
                  f"{_fmt(t.get('mae_nonmetals'))} | {_fmt(t.get('metal_accuracy'))} |")

    pre = args.study / "pretrain_size_hse"
    hse = fits_by_study.get("pbe_gap_to_hse", {})
    if (pre / "results.json").is_file() and "full" in hse:
        rows = load_results(pre)
        pre_fits = fit_results(rows)
        if "full" in pre_fits:
            pf = pre_fits["full"]
            n_train = int(rows[0]["n_train"])
            plot_scaling(rows, args.figures / "scaling_pretrain_size_hse.png", fits=pre_fits,
                         title=f"HSE gap after fine-tuning on {n_train}: pre-training size",
                         ylabel="gap_hse test MAE (eV)")
            md += ["\n### Error against pre-training size (HSE fine-tuning set fixed)\n",
                   "![pretrain](figures/scaling_pretrain_size_hse.png)\n",
                   "| PBE pre-training N | pre-training epochs | PBE val MAE | HSE test MAE (eV) |", "|---:|---:|---|---|"]
            for r in sorted(rows, key=lambda r: r["size"]):
                md.append(f"| {r['size']} | {r['pretrain_epochs']} | {_fmt(r['pretrain_best_val_mae'])} | "
                          f"{_fmt(r['test_mae'])} |")
            md += ["", f"Fit: MAE = {pf.a:.3g} N^-({pf.b:.3f} ± {pf.b_err:.3f})"]
            n_pre = max(pf.sizes)
            for ratio in args.cost_ratios:
                plan = plan_budget(pf, hse["full"], n_pretrain=n_pre, n_train=n_train, cost_ratio=ratio,
                                   budgets=[1000, 3000, 10000, 30000])
                plot_budget(plan.rows, args.figures / f"plan_hse_x{ratio:g}.png",
                            title=f"HSE = {ratio:g} x PBE, from {n_pre:.0f} PBE + {n_train} HSE")
                md += [f"\nPlan, HSE = {ratio:g} × PBE, from {n_pre:.0f} PBE + {n_train} HSE structures:\n",
                       "```", plan.table(), "```"]
    atomic_write_text(args.tables, "\n".join(md) + "\n")
    print(f"wrote {args.tables} and figures in {args.figures}")


if __name__ == "__main__":
    main()
