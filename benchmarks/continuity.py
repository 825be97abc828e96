"""How much the shipped models' answers move under distortions far below DFT's own geometry error.

For seeded random crystals of a shared test split (``--n``, default 1,000 of
``splits.json['e_form_pbe']['test']``), every shipped model answers on the crystal as stored and on
five distorted copies:

  * ``displace``: every atom moved by 0.01 A in a random direction (seeded per crystal);
  * ``iso+1`` / ``iso-1``: the cell scaled by 1.01 / 0.99 along every axis (fractional coordinates kept);
  * ``c+1`` / ``c-1``: the third lattice vector stretched / compressed by 1% (uniaxial along c).

Reported per model and distortion: the median, 95th percentile and largest absolute change, the
share of crystals whose change exceeds the model's own test MAE, and for band-gap models the share
whose metal decision flips (the gate's where the model has one, else the value crossing 0.1 eV).
Δ-models are measured on their CGAT residual (the potential they add is smooth in the geometry).
Multi-fidelity models get a row per fidelity. ``--blend`` measures the same models with edge ranks
that blend neighbouring shells over that many A above the tolerance (0: the models as trained).

    DGLBACKEND=pytorch python benchmarks/continuity.py --n 1000 --blend 0 --out benchmarks/continuity/hard.json
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

DISTORTIONS = ("displace", "iso+1", "iso-1", "c+1", "c-1")


def prepare_torch(threads: int) -> None:
    """Threads as asked, and freed memory kept for reuse, as the package's batched prediction does."""
    import torch

    from matgl_cgat._allocator import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)


def distorted(structure, how: str, seed: int):
    from pymatgen.core import Lattice, Structure

    if how == "displace":
        rng = np.random.default_rng(seed)
        step = rng.normal(size=(len(structure), 3))
        step *= 0.01 / np.linalg.norm(step, axis=1, keepdims=True)
        return Structure(structure.lattice, structure.species, structure.cart_coords + step, coords_are_cartesian=True)
    matrix = structure.lattice.matrix.copy()
    if how.startswith("iso"):
        matrix *= 1.01 if how.endswith("+1") else 0.99
    else:
        matrix[2] *= 1.01 if how.endswith("+1") else 0.99
    return Structure(Lattice(matrix), structure.species, structure.frac_coords)


def answers(models: dict, structures: list, converter, batch_size: int = 128) -> dict:
    """{column: (values, metal decisions or None)} for every model (a column per fidelity)."""
    import torch

    from matgl_cgat.graph import batch_graphs

    out: dict = {}
    for start in range(0, len(structures), batch_size):
        g = batch_graphs([converter.get_graph(s)[0] for s in structures[start : start + batch_size]])
        for name, model in models.items():
            with torch.no_grad():
                a = model.answers(g)
            cols = model.fidelities or [None]
            for j, fid in enumerate(cols):
                key = name if fid is None else f"{name}[{fid}]"
                value = a.value[:, j].numpy()
                metal = None if a.metal is None else a.metal[:, j].numpy()
                v, m = out.setdefault(key, ([], []))
                v.append(value)
                m.append(metal)
    return {k: (np.concatenate(v), None if m[0] is None else np.concatenate(m)) for k, (v, m) in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/mp_gap")
    ap.add_argument("--split", default="e_form_pbe")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blend", type=float, default=0.0)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from pymatgen.core import Structure

    from matgl_cgat._io import atomic_write_text
    from matgl_cgat.graph import CGATGraphConverter
    from matgl_cgat.pretrained import available_models, load_model

    prepare_torch(args.threads)
    data = Path(args.data)
    if not (data / "mp_gap.jsonl.gz").is_file():
        sys.exit(f"{data}: no mp_gap.jsonl.gz (pass --data)")
    test = set(json.loads((data / "splits.json").read_text())[args.split]["test"])
    records = {}
    with gzip.open(data / "mp_gap.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            if r["mat_id"] in test:
                records[r["mat_id"]] = r["structure"]
    ids = sorted(records)
    pick = np.random.default_rng(args.seed).choice(len(ids), min(args.n, len(ids)), replace=False)
    ids = [ids[i] for i in sorted(pick)]
    base = [Structure.from_dict(records[i]) for i in ids]

    names = args.models or list(available_models())
    models = {n: load_model(n).eval() for n in names}
    settings = {(m.num_neighbors, m.tolerance) for m in models.values()}
    if len(settings) != 1:
        sys.exit(f"the models use different graph settings {settings}; pass --models of one kind")
    (k, tol), = settings
    converter = CGATGraphConverter(num_neighbors=k, tolerance=tol, blend=args.blend)
    t0 = time.perf_counter()
    reference = answers(models, base, converter)
    rows: dict = {}
    for how in DISTORTIONS:
        moved = [distorted(s, how, args.seed * 100003 + i) for i, s in enumerate(base)]
        got = answers(models, moved, converter)
        for key, (value, metal) in got.items():
            ref_value, ref_metal = reference[key]
            name = key.split("[")[0]
            model = models[name]
            mae = (model.metadata or {}).get("test_mae")
            if isinstance(mae, dict):  # a multi-fidelity model: per fidelity
                mae = (mae.get(key.split("[")[1].rstrip("]")) or {}).get("mae")
            delta = np.abs(value - ref_value)
            row = {"median": float(np.median(delta)), "p95": float(np.quantile(delta, 0.95)),
                   "max": float(delta.max()), "worst_id": ids[int(delta.argmax())], "test_mae": mae,
                   "share_above_mae": None if mae is None else float(np.mean(delta > mae))}
            if "gap" in str((model.metadata or {}).get("property", "")) or "Gap" in name:
                flips = (metal != ref_metal) if metal is not None else ((value > 0.1) != (ref_value > 0.1))
                row["metal_flips"] = float(np.mean(flips))
            rows.setdefault(key, {})[how] = row
        print(f"{how}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = {"n": len(ids), "split": f"splits.json['{args.split}'] test", "seed": args.seed,
               "blend_A": args.blend, "tolerance_A": tol, "models": rows,
               "seconds": round(time.perf_counter() - t0), "date": time.strftime("%Y-%m-%d"),
               "command": " ".join(["python", *sys.argv])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
    for key, per in rows.items():
        worst = max(per[h]["max"] for h in DISTORTIONS)
        strain = max(per[h]["share_above_mae"] or 0 for h in DISTORTIONS if h != "displace")
        print(f"{key:38s} max change {worst:7.3f}  share above MAE under 1% strain {strain:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
