"""Give a trained CGAT an error bar and a training domain, and measure how well calibrated the bar is.

This is how every shipped model got its uncertainty head and its ``domain`` card entry:

    python examples/fit_uncertainty.py --model CGAT-PBE-Eform --save matgl_cgat/pretrained/CGAT-PBE-Eform

1. the training domain (element counts, volume-per-atom range) of the model's training split goes into
   ``metadata["domain"]`` (see :mod:`matgl_cgat.domain`);
2. an uncertainty head is fitted on the frozen network's training residuals and recalibrated on the
   validation split (:func:`matgl_cgat.uncertainty.fit_sigma_head`);
3. its calibration is measured on the test split: coverage of the 68% and 95% intervals, NLL,
   Spearman(sigma, |error|), written to ``--results`` (JSON), the card and a calibration plot.

The network's own weights are not changed, so the model's test MAE stays what its card says.
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
from matgl_cgat.data import default_data_dir, load_dataset, model_splits, split_per_target
from matgl_cgat.domain import TrainingDomain
from matgl_cgat.plots import plot_calibration
from matgl_cgat.uncertainty import calibration, fit_sigma_head, label_columns, predict_with_sigma


def multi_fidelity_parts(model, data: Path | None, cache: Path):
    """Per-fidelity splits of the shared data for a multi-fidelity model (as it was trained)."""
    folder = data or default_data_dir()
    columns = label_columns(model)
    ds = load_dataset(folder / "mp_gap.jsonl.gz", columns, require="any", cache_dir=cache,
                      converter=model.graph_converter()).with_targets(columns)
    parts = split_per_target(ds, folder / "splits.json", columns)
    parts.source = str(folder / "mp_gap.jsonl.gz")
    return columns, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="shipped name or model folder")
    parser.add_argument("--target", default=None, help="label (default: the card's property)")
    parser.add_argument("--data", type=Path, default=None, help="data file or folder (default: shared mp_gap)")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--hidden", type=int, default=32, help="hidden width of the uncertainty head")
    parser.add_argument("--max-train", type=int, default=8000, help="training structures the head sees")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", type=Path, required=True, help="model folder to write (may be the source)")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSON with the calibration (default benchmarks/uncertainty/<name>.json)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="calibration plot (default docs/figures/calibration_<name>.png)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = matgl.load_model(args.model)
    card = dict(model.metadata or {})
    name = card.get("name") or Path(args.model).name
    if getattr(model, "fidelities", None):
        columns, parts = multi_fidelity_parts(model, args.data, args.graph_cache)
    else:
        if not (args.target or card.get("property")):
            parser.error("the model card names no property; pass --target")
        target, parts = model_splits(model, args.target, args.data, cache_dir=args.graph_cache)
        columns = [target]
    started = time.time()
    domain = TrainingDomain.from_dataset(parts.train, source=f"{Path(parts.source).name}, {parts.split} train")
    fit = fit_sigma_head(model, parts.train, parts.val, target=columns, hidden=args.hidden, max_train=args.max_train)
    pred, sigma = predict_with_sigma(fit.model, parts.test)
    pred, sigma = pred.reshape(len(parts.test), -1), sigma.reshape(len(parts.test), -1)
    tests = {}
    for j, column in enumerate(columns):
        y = parts.test.labels[column]
        have = np.isfinite(y)
        tests[column] = calibration(y[have], pred[have, j], sigma[have, j])
    test = tests[columns[0]]
    seconds = time.time() - started

    def rounded(c):
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in c.to_dict().items()
                if k not in ("levels", "observed")}

    summary = rounded(test) if len(columns) == 1 else {c: rounded(t) for c, t in tests.items()}
    card["domain"] = domain.to_dict()
    card["uncertainty"] = {
        "method": "sigma head on the frozen network: Laplace NLL on training residuals "
                  f"({fit.n_train} structures), log-sigma recalibrated on validation (a={fit.shift:.3f}, b={fit.slope:.3f})",
        "test": summary,
        "command": "python " + shlex.join(["examples/fit_uncertainty.py", *sys.argv[1:]]),
    }
    fit.model.save(args.save, metadata=card)
    results = args.results or Path("benchmarks/uncertainty") / f"{name}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    one = len(columns) == 1
    atomic_write_text(results, json.dumps({
        "model": name, "target": columns[0] if one else columns, "split": parts.split, "seconds": round(seconds),
        "recalibration": {"a": fit.shift, "b": fit.slope},
        "val": fit.val.to_dict() if one else {c: v.to_dict() for c, v in fit.val_by_target.items()},
        "test": test.to_dict() if one else {c: t.to_dict() for c, t in tests.items()}}, indent=2) + "\n")
    plot = args.plot or Path("docs/figures") / f"calibration_{name}.png"
    plot_calibration({name: test} if one else tests, plot, title=f"{name}: test split" + (f" ({columns[0]})" if one else ""))
    for column, t in tests.items():
        print(f"{name} {column}: test MAE {t.mae:.4f}, mean sigma {t.mean_sigma:.4f}; {t.coverage_68:.1%} of test errors "
              f"inside the 68% interval (±0.81 sigma), {t.coverage_95:.1%} inside the 95% one (±2.12 sigma); NLL "
              f"{t.nll:.3f}; Spearman(sigma, |error|) {t.spearman:.2f}")
    print(f"{seconds:.0f} s")
    print(f"saved to {args.save}; results in {results}; plot {plot}")


if __name__ == "__main__":
    main()
