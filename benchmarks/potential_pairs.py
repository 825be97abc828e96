"""Averages of corrected potentials: does a second universal potential help where CGAT on top does not?

For each target of ``hifi_eform.jsonl.gz`` (r2SCAN, measured), each labelled potential's formation
enthalpy gets its per-element correction fitted on the whole training split (route (b) of
``benchmarks/potential_routes.py`` at all labels), and the mean of the corrected values of every
combination of potentials is scored on the crystals all of them have a value for. Validation chooses;
test is reported. Writes ``benchmarks/potential_routes/pairs.json``.

    python benchmarks/potential_pairs.py --labels runs/labels/CHGNet-r2SCAN runs/labels/SevenNet-MF-0-r2SCAN \\
        runs/labels/M3GNet-MatPES-r2SCAN
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_splits, read_structures
from matgl_cgat.potentials import ElementCorrection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, nargs="+", required=True, help="folders of potential_labels.py")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/potential_routes/pairs.json"))
    args = parser.parse_args()
    data = default_data_dir()
    values = {}
    for folder in args.labels:
        with open(folder / "hifi_eform.csv") as f:
            values[folder.name] = {r["id"]: float(r["e_form_potential"]) for r in csv.DictReader(f)}
    rows = []
    for target in ("e_form_r2scan", "e_form_exp"):
        splits = load_splits(data / "hifi_eform_splits.json", target)
        ids = {part: [i for i in members if all(i in v for v in values.values())] for part, members in splits.items()}
        records = read_structures(data / "hifi_eform.jsonl.gz", target, ids=set().union(*ids.values()))
        structure, label = dict(zip(records.ids, records.structures)), dict(zip(records.ids, records.labels[target]))
        corrected = {}
        for name, value in values.items():
            fit = ElementCorrection.fit([structure[i] for i in ids["train"]], np.array([value[i] for i in ids["train"]]),
                                        np.array([label[i] for i in ids["train"]]))
            corrected[name] = {part: fit.apply([structure[i] for i in ids[part]], np.array([value[i] for i in ids[part]]))
                               for part in ("val", "test")}
        for k in range(1, len(values) + 1):
            for combo in itertools.combinations(values, k):
                mae = {part: float(np.abs(np.mean([corrected[n][part] for n in combo], axis=0)
                                          - np.array([label[i] for i in ids[part]])).mean()) for part in ("val", "test")}
                rows.append({"target": target, "potentials": list(combo), "val_mae": round(mae["val"], 4),
                             "test_mae": round(mae["test"], 4), "n_val": len(ids["val"]), "n_test": len(ids["test"])})
                print(json.dumps(rows[-1]), flush=True)
    atomic_write_text(args.out, json.dumps({"rows": rows, "command": "python benchmarks/potential_pairs.py "
                                            + " ".join(shlex.quote(a) for a in sys.argv[1:])}, indent=1))


if __name__ == "__main__":
    main()
