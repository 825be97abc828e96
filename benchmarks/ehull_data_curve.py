"""Is the hull-distance bar of issue #12 within reach of this data? A learning curve of the cheap probe.

``CGAT-PBE-Ehull`` stopped improving after 21 epochs (test 0.0376 eV/atom, stability F1 0.71), level
with the composition probe of ``ehull_loss_probe.py`` (0.0380). Training the network longer has not
helped, so the next question is whether more *data* would. Converged CGAT learning curves cost hours
per point here; the probe costs seconds. This script fits the probe (gradient-boosted trees on Magpie
composition statistics plus atoms per cell and volume per atom; squared loss, bounded at 0, shifted
by the validation-fitted constant as ``calibrate_offset`` does) on nested random subsets of the hull
training split, scores every fit on the fixed test split (MAE and stability precision / recall / F1
at 0 eV/atom), fits MAE = a N^-b and asks at what size the probe would reach the issue's 0.030.

It says how fast this target's error falls with data for a model that learns it as well as the
shipped CGAT does today, not what a better network could do; the write-up in ``benchmarks/RESULTS.md``
keeps that distinction.

    python benchmarks/ehull_data_curve.py [--data ../shared/data/mp_gap] [--out benchmarks/ehull_data_curve.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from matgl_cgat._io import atomic_write_text
from matgl_cgat.metrics import stability_metrics
from matgl_cgat.scaling import fit_power_law
from matgl_cgat.transfer import best_output_shift

sys.path.insert(0, str(Path(__file__).parent))
from ehull_loss_probe import hull_probe_data

BAR_MAE = 0.030


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--seeds", type=int, default=3, help="random subsets per fraction below 1")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("ehull_data_curve.json"))
    args = parser.parse_args()
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = hull_probe_data(args.data)
    n_full = len(y["train"])

    runs = []
    for fraction in args.fractions:
        n = round(fraction * n_full)
        for seed in range(1 if fraction >= 1.0 else args.seeds):
            rows = np.random.default_rng(seed).permutation(n_full)[:n]
            t0 = time.time()
            model = HistGradientBoostingRegressor(loss="squared_error", max_iter=1000, learning_rate=0.05,
                                                  early_stopping=False, random_state=seed)
            model.fit(x["train"][rows], y["train"][rows])
            shift = best_output_shift(model.predict(x["val"]), y["val"], floor=0.0)[0]
            pred = np.clip(model.predict(x["test"]) - shift, 0.0, None)
            scores = stability_metrics(y["test"], pred)
            runs.append({"n_train": n, "seed": seed, "test_mae": float(np.abs(pred - y["test"]).mean()),
                         "precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
                         "fit_seconds": round(time.time() - t0, 1)})
            print(json.dumps(runs[-1]), flush=True)

    fit = fit_power_law([r["n_train"] for r in runs], [r["test_mae"] for r in runs])
    result = {"model": "HistGradientBoostingRegressor, squared loss, Magpie + atoms per cell + volume per atom",
              "n_train_full": n_full, "n_test": len(y["test"]), "runs": runs, "fit": fit.to_dict(),
              "bar_mae": BAR_MAE}
    try:
        n_bar, lo, hi = fit.size_for(BAR_MAE, ci=0.68)
        result["n_train_for_bar"] = {"n": n_bar, "ci68": [lo, hi], "times_the_training_split": n_bar / n_full}
    except ValueError as err:
        result["n_train_for_bar"] = str(err)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(str(fit), json.dumps(result["n_train_for_bar"]))


if __name__ == "__main__":
    main()
