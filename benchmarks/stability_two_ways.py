"""Stability two ways on the hull-distance test split: the direct hull-distance model against the
formation-energy model placed on a hull built from the training set (``matgl_cgat.stability``).

    python benchmarks/stability_two_ways.py            # writes benchmarks/stability_two_ways.json

Both ways are scored against the shared ``e_hull_pbe`` labels of ``splits.json["e_hull_pbe"]["test"]``:
MAE, and stability precision/recall/F1 at 0 eV/atom (``matgl_cgat.metrics.stability_metrics``).
The reference hull holds the DFT formation energies of the hull *training* split only. Two controls:
the same hull with the DFT formation energies of the test structures (what a perfect formation-energy
model would score: the hull's own incompleteness), and the subset of test structures that the
formation-energy model did not train on (the shared splits are drawn per property, so most hull test
structures are in the formation-energy training split: on them its errors are training errors).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import matgl
import numpy as np
from pymatgen.core import Structure

import matgl_cgat  # noqa: F401
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_dataset
from matgl_cgat.metrics import stability_metrics
from matgl_cgat.stability import ReferenceHull


def scores(y_true, y_pred) -> dict:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    m = stability_metrics(y_true, y_pred, threshold=0.0)
    keep = ("precision", "recall", "f1", "n_stable", "n_predicted_stable")
    return {"n": len(y_true), "mae": float(np.mean(np.abs(y_true - y_pred))), **{k: m[k] for k in keep if k in m}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="mp_gap folder (default: the shared data)")
    parser.add_argument("--eform-model", default="CGAT-PBE-Eform")
    parser.add_argument("--ehull-model", default="CGAT-PBE-Ehull")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("stability_two_ways.json"))
    args = parser.parse_args()
    folder = args.data or default_data_dir()
    splits = json.loads((folder / "splits.json").read_text())
    train_ids, test_ids = set(splits["e_hull_pbe"]["train"]), splits["e_hull_pbe"]["test"]
    wanted = train_ids | set(test_ids)
    eform_seen = set(splits["e_form_pbe"]["train"])

    records = {}
    with gzip.open(folder / "mp_gap.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            if r["mat_id"] in wanted:
                r["composition"] = Structure.from_dict(r.pop("structure")).composition
                records[r["mat_id"]] = r
    started = time.time()
    hull = ReferenceHull([records[i]["composition"] for i in sorted(train_ids)],
                         [records[i]["e_form_pbe"] for i in sorted(train_ids)])

    eform, ehull = matgl.load_model(args.eform_model), matgl.load_model(args.ehull_model)
    full = load_dataset(folder / "mp_gap.jsonl.gz", "e_hull_pbe", cache_dir=args.graph_cache,
                        converter=eform.graph_converter())
    positions, missing = full.positions_of(test_ids)
    if missing:
        raise SystemExit(f"{len(missing)} test ids not in the data, e.g. {missing[:3]}")
    test = full.subset(positions.tolist())
    ids = test.ids
    label = np.array([records[i]["e_hull_pbe"] for i in ids])
    comps = [records[i]["composition"] for i in ids]
    e_form_pred = eform.predict_dataset(test)
    direct = ehull.predict_dataset(test)
    via_hull = hull.distances(comps, e_form_pred)
    oracle = hull.distances(comps, [records[i]["e_form_pbe"] for i in ids])
    unseen = np.array([i not in eform_seen for i in ids])
    result = {
        "eform_model": args.eform_model, "ehull_model": args.ehull_model,
        "reference_hull": f"{hull.size} DFT formation energies of the e_hull_pbe training split",
        "eform_mae_on_test": float(np.mean(np.abs(e_form_pred - np.array([records[i]["e_form_pbe"] for i in ids])))),
        "all_test": {"direct": scores(label, direct), "eform_plus_hull": scores(label, via_hull),
                     "dft_eform_plus_hull": scores(label, oracle)},
        "not_in_eform_training": {"direct": scores(label[unseen], direct[unseen]),
                                  "eform_plus_hull": scores(label[unseen], via_hull[unseen]),
                                  "dft_eform_plus_hull": scores(label[unseen], oracle[unseen]),
                                  "eform_mae": float(np.mean(np.abs(e_form_pred[unseen] - np.array(
                                      [records[i]["e_form_pbe"] for i in np.array(ids)[unseen]]))))},
        "seconds": round(time.time() - started),
        "command": "python benchmarks/stability_two_ways.py",
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
