"""A candidate continuity fix, measured: answer with the mean over the crystal and its strained copies.

The strain check (``matgl_cgat.continuity``) probes each crystal under 1% uniaxial strains along each
lattice vector. Averaging the answers of the crystal and its six copies is a prediction-time smoothing
(the issue's "an average over several tolerances at prediction time", with strains in place of
tolerances). Whether it helps is a measurement: on ``--n`` seeded crystals of each model's test split,
the plain and the averaged answer are compared on (``--split val`` measures the validation split,
where a choice between them may be made)

  * accuracy: MAE against the labels;
  * continuity: the change of the answer under distortions the average does not contain: every atom
    moved by 0.01 A in a random direction (seeded per crystal), the cell scaled by 1.01 and 0.99, and
    a 1% shear of a against c (median, 95th percentile, largest change, and the share of crystals
    moving by more than the model's test MAE);
  * cost: network passes per crystal (7 against 1).

    DGLBACKEND=pytorch python benchmarks/probe_average.py --n 500 --out benchmarks/continuity/probe_average.json
    DGLBACKEND=pytorch python benchmarks/probe_average.py --n 0 --split val --accuracy-only \
        --out benchmarks/continuity/probe_average_val.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from strain_check import displaced, mp_gap, split_ids  # this folder's: run as python benchmarks/probe_average.py

os.environ.setdefault("DGLBACKEND", "pytorch")

DISTORTIONS = ("displace", "iso+1", "iso-1", "shear")


def distorted(structure, how: str, seed: int):
    from pymatgen.core import Lattice, Structure

    from matgl_cgat.continuity import strained

    if how == "displace":
        return displaced(structure, seed)
    if how == "shear":  # a tilted towards c by 1% of c's length: no probe contains it
        matrix = structure.lattice.matrix.copy()
        matrix[0] += 0.01 * matrix[2]
        return Structure(Lattice(matrix), structure.species, structure.frac_coords)
    return strained(structure, how)


def answers(model, structures: list, batch_size: int = 128) -> np.ndarray:
    import torch

    from matgl_cgat.graph import batch_graphs

    converter = model.graph_converter()
    out = []
    for start in range(0, len(structures), batch_size):
        g = batch_graphs([converter.get_graph(s)[0] for s in structures[start : start + batch_size]])
        with torch.no_grad():
            out.append(model.answers(g).value[:, 0].numpy())
    return np.concatenate(out)


def averaged(model, structures: list) -> np.ndarray:
    from matgl_cgat.continuity import STRAIN_PROBES, strained

    total = answers(model, structures)
    for probe in STRAIN_PROBES:
        total = total + answers(model, [strained(s, probe) for s in structures])
    return total / (1 + len(STRAIN_PROBES))


def summary(delta: np.ndarray, mae: float) -> dict:
    return {"median": round(float(np.median(delta)), 4), "p95": round(float(np.quantile(delta, 0.95)), 4),
            "max": round(float(delta.max()), 4), "share_above_mae": round(float(np.mean(delta > mae)), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/mp_gap")
    ap.add_argument("--models", nargs="+", default=["CGAT-PBE-Eform", "CGAT-PBE-BandGap", "CGAT-PBE-Ehull"])
    ap.add_argument("--n", type=int, default=500, help="seeded crystals of the split (0: all)")
    ap.add_argument("--split", default="test", choices=["val", "test"],
                    help="the split measured (val: where a choice may be made; test: reporting only)")
    ap.add_argument("--accuracy-only", action="store_true", help="skip the distortions (a 5th of the time)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch
    from pymatgen.core import Structure

    from matgl_cgat._io import atomic_write_text
    from matgl_cgat.continuity import STRAIN_PROBES, own_mae
    from matgl_cgat.pretrained import load_model

    torch.set_num_threads(args.threads)
    records, splits = mp_gap(Path(args.data))
    results: dict = {}
    t0 = time.perf_counter()
    for name in args.models:
        model = load_model(name).eval()
        prop = model.metadata["property"]
        ids = split_ids(splits, prop, args.n, args.seed, part=args.split)
        base = [Structure.from_dict(records[i]["structure"]) for i in ids]
        labels = np.array([records[i][prop] for i in ids], dtype=float)
        mae = own_mae(model)
        plain, mean = answers(model, base), averaged(model, base)
        row = {"n": len(ids), "split": f"splits.json['{prop}'] {args.split} (seeded subset)", "test_mae_card": mae,
               "mae_plain": round(float(np.abs(plain - labels).mean()), 4),
               "mae_averaged": round(float(np.abs(mean - labels).mean()), 4), "continuity": {}}
        for how in () if args.accuracy_only else DISTORTIONS:
            moved = [distorted(s, how, args.seed * 100003 + k) for k, s in enumerate(base)]
            row["continuity"][how] = {"plain": summary(np.abs(answers(model, moved) - plain), mae),
                                      "averaged": summary(np.abs(averaged(model, moved) - mean), mae)}
        results[name] = row
        print(name, json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    out = {"probes": list(STRAIN_PROBES), "models": results, "seconds": round(time.perf_counter() - t0),
           "date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
