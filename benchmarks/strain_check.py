"""Does the strain check (``matgl_cgat.continuity``) find the crystals whose answers jump, and is the
widened sigma honest for them? Measured on a shared test split, with a distortion the check never probes.

For each model, on the test crystals of its property's split in ``mp_gap`` (``--n`` seeded ones, or
all), the screening route (``predict_table``) runs once without the check and once with it
(``strain_check=True``), single process, ``--threads`` torch threads (timing side by side). Reported:

  * flagged: the share of crystals whose answer moves by more than the model's test MAE under one
    of the check's probes (1% uniaxial strains along each lattice vector, either sign);
  * the MAE of flagged and unflagged crystals against their labels (do flagged answers err more?);
  * the share of errors inside the 68% interval (Laplace: |error| <= 0.806 sigma) for flagged and
    unflagged crystals, before and after sigma is widened by the strain spread;
  * held out: every atom moved by 0.01 A in a random direction (seeded per crystal; not a probe of
    the check): of the crystals whose answer then moves by more than the model's MAE, the share the
    check flagged (recall), and of the flagged ones, the share that move (precision);
  * the time with the check over the time without.

    DGLBACKEND=pytorch python benchmarks/strain_check.py --out benchmarks/continuity/strain_check.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("DGLBACKEND", "pytorch")

LAPLACE_68 = float(np.log(1 / 0.32) / np.sqrt(2))  # 68% of a Laplace's mass lies within this many sigmas


def displaced(structure, seed: int):
    from pymatgen.core import Structure

    step = np.random.default_rng(seed).normal(size=(len(structure), 3))
    step *= 0.01 / np.linalg.norm(step, axis=1, keepdims=True)
    return Structure(structure.lattice, structure.species, structure.cart_coords + step, coords_are_cartesian=True)


def mp_gap(data: Path) -> tuple[dict, dict]:
    """``({mat_id: record}, splits)`` of the shared mp_gap data, or exit naming the folder."""
    if not (data / "mp_gap.jsonl.gz").is_file():
        sys.exit(f"{data}: no mp_gap.jsonl.gz (pass --data)")
    records = {}
    with gzip.open(data / "mp_gap.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            records[r["mat_id"]] = r
    return records, json.loads((data / "splits.json").read_text())


def split_ids(splits: dict, prop: str, n: int, seed: int, part: str = "test") -> list[str]:
    """The ``part`` ids of ``prop``'s split, or a seeded subset of ``n`` of them (0: all), sorted."""
    ids = sorted(splits[prop][part])
    if n:
        pick = np.random.default_rng(seed).choice(len(ids), min(n, len(ids)), replace=False)
        ids = [ids[i] for i in sorted(pick)]
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/mp_gap")
    ap.add_argument("--models", nargs="+", default=["CGAT-PBE-Eform", "CGAT-PBE-BandGap", "CGAT-PBE-Ehull"])
    ap.add_argument("--n", type=int, default=0, help="seeded test crystals per model (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch
    from pymatgen.core import Structure

    from matgl_cgat._io import atomic_write_text
    from matgl_cgat.continuity import STRAIN_PROBES, own_mae
    from matgl_cgat.predict import predict_table
    from matgl_cgat.pretrained import load_model

    records, splits = mp_gap(Path(args.data))
    results: dict = {}
    for name in args.models:
        model = load_model(name).eval()
        prop = model.metadata["property"]
        ids = split_ids(splits, prop, args.n, args.seed)
        structures = {i: Structure.from_dict(records[i]["structure"]) for i in ids}
        labels = np.array([records[i][prop] for i in ids], dtype=float)
        unit = model.metadata.get("units", "")
        col = f"{name} ({unit})"
        t0 = time.perf_counter()
        plain = predict_table({name: model}, structures, workers=0, threads=args.threads)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        checked = predict_table({name: model}, structures, workers=0, threads=args.threads, strain_check=True)
        t_checked = time.perf_counter() - t0
        moved = predict_table({name: model}, {i: displaced(s, args.seed * 100003 + k)
                                              for k, (i, s) in enumerate(structures.items())},
                              workers=0, threads=args.threads)
        value = plain[col].to_numpy(float)
        assert np.allclose(value, checked[col].to_numpy(float)), "the check must not change a value"
        sigma = plain[f"{name} sigma ({unit})"].to_numpy(float)
        widened = checked[f"{name} sigma ({unit})"].to_numpy(float)
        spread = checked[f"{name} strain ({unit})"].to_numpy(float)
        mae = own_mae(model)
        flagged = spread > mae
        err = np.abs(value - labels)
        jump = np.abs(moved[col].to_numpy(float) - value) > mae

        def cover(mask, s):
            return round(float(np.mean(err[mask] <= LAPLACE_68 * s[mask])), 4) if mask.any() else None

        def mean(x, mask):
            return round(float(x[mask].mean()), 4) if mask.any() else None

        results[name] = {
            "n": len(ids), "split": f"splits.json['{prop}'] test", "units": unit, "test_mae_card": mae,
            "flagged_share": round(float(flagged.mean()), 4),
            "mae_flagged": mean(err, flagged), "mae_unflagged": mean(err, ~flagged),
            "spread_median": round(float(np.median(spread)), 4),
            "spread_p95": round(float(np.quantile(spread, 0.95)), 4), "spread_max": round(float(spread.max()), 4),
            "coverage68_flagged_before": cover(flagged, sigma), "coverage68_flagged_after": cover(flagged, widened),
            "coverage68_unflagged_before": cover(~flagged, sigma),
            "coverage68_unflagged_after": cover(~flagged, widened),
            "mean_sigma_before": round(float(sigma.mean()), 4), "mean_sigma_after": round(float(widened.mean()), 4),
            "displace_0.01A_moves_above_mae": round(float(jump.mean()), 4),
            "displace_recall": mean(flagged.astype(float), jump),
            "displace_precision": mean(jump.astype(float), flagged),
            "seconds_without_check": round(t_plain, 1), "seconds_with_check": round(t_checked, 1),
            "time_ratio": round(t_checked / t_plain, 2),
        }
        print(name, json.dumps(results[name]), flush=True)
    summary = {"probes": list(STRAIN_PROBES), "threads": args.threads, "torch": torch.__version__,
               "models": results, "date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
