"""Validation MAE of every shipped model with blended shell ranks, as trained (no weight changed).

A model trained on integer shell ranks sees fractional ones wherever a gap between two neighbour
distances lies between the tolerance and the tolerance plus the blend width; this measures what that
costs on each model's own validation split (never the test split: the width is chosen here), for
several widths. Δ-models are left out (their validation needs the potential; their residual's
continuity is in ``benchmarks/continuity.py``). Multi-fidelity models: one row per fidelity, on that
fidelity's split.

    DGLBACKEND=pytorch python benchmarks/shell_blend_validation.py --blends 0 0.05 0.1 0.2 \
        --out benchmarks/continuity/validation.json
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

#: data file and split file of each property (as the model cards name them)
SOURCES = {"gap_pbe": ("mp_gap.jsonl.gz", "splits.json"), "e_form_pbe": ("mp_gap.jsonl.gz", "splits.json"),
           "e_hull_pbe": ("mp_gap.jsonl.gz", "splits.json"), "gap_hse": ("mp_gap.jsonl.gz", "splits.json"),
           "gap_gllbsc": ("mp_gap.jsonl.gz", "splits.json"), "gap_scan": ("mp_gap.jsonl.gz", "splits.json"),
           "gap_exp": ("exp_gap.jsonl.gz", "exp_gap_splits.json"),
           "e_form_exp": ("hifi_eform.jsonl.gz", "hifi_eform_splits.json"),
           "e_form_r2scan": ("hifi_eform.jsonl.gz", "hifi_eform_splits.json")}


def columns(name: str, model) -> list[tuple[str, str, int]]:
    """(row name, property, output column) of a model."""
    if model.fidelities:
        return [(f"{name}[{f}]", f"gap_{f.lower()}", j) for j, f in enumerate(model.fidelities)]
    return [(name, model.metadata["property"], 0)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/mp_gap")
    ap.add_argument("--blends", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    ap.add_argument("--part", default="val", choices=["val", "test"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch
    from continuity import prepare_torch  # this folder's continuity.py
    from pymatgen.core import Structure

    from matgl_cgat._io import atomic_write_text
    from matgl_cgat.graph import CGATGraphConverter, batch_graphs
    from matgl_cgat.pretrained import available_models, load_model

    prepare_torch(args.threads)
    data = Path(args.data)
    models = {}
    for name in available_models():
        model = load_model(name).eval()
        if "anchor" in (model.metadata or {}) or name.endswith("-Delta"):
            continue
        models[name] = model
    wanted: dict[str, dict[str, set]] = {}  # file -> property -> ids
    for name, model in models.items():
        for _, prop, _ in columns(name, model):
            file, split_file = SOURCES[prop]
            ids = json.loads((data / split_file).read_text())[prop][args.part]
            wanted.setdefault(file, {})[prop] = set(ids)
    rows: dict = {}
    t0 = time.perf_counter()
    for file, props in wanted.items():
        need = set().union(*props.values())
        records = {}
        with gzip.open(data / file, "rt") as f:
            for line in f:
                r = json.loads(line)
                if r["mat_id"] in need:
                    records[r["mat_id"]] = r
        ids = sorted(records)
        structures = [Structure.from_dict(records[i]["structure"]) for i in ids]
        for blend in args.blends:
            converter = CGATGraphConverter(num_neighbors=24, tolerance=0.01, blend=blend)
            graphs = [converter.get_graph(s)[0] for s in structures]
            for name, model in models.items():
                if (model.num_neighbors, model.tolerance) != (24, 0.01):
                    sys.exit(f"{name}: graph settings {(model.num_neighbors, model.tolerance)} not measured here")
                cols = [c for c in columns(name, model) if c[1] in props]
                if not cols:
                    continue
                pred = []
                with torch.no_grad():
                    for s in range(0, len(graphs), 128):
                        pred.append(model(batch_graphs(graphs[s : s + 128])).reshape(-1, model.ntargets))
                pred = torch.cat(pred).numpy()
                for row, prop, j in cols:
                    keep = [k for k, i in enumerate(ids) if i in props[prop] and records[i].get(prop) is not None]
                    y = np.array([records[ids[k]][prop] for k in keep], dtype=float)
                    mae = float(np.mean(np.abs(pred[keep, j] - y)))
                    rows.setdefault(row, {"n": len(keep), "property": prop})[str(blend)] = round(mae, 5)
            print(f"{file} blend {blend}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = {"part": args.part, "blends_A": args.blends, "tolerance_A": 0.01, "mae": rows,
               "seconds": round(time.perf_counter() - t0), "date": time.strftime("%Y-%m-%d"),
               "command": " ".join(["python", *sys.argv])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
    for row, r in rows.items():
        print(f"{row:36s} n={r['n']:5d} " + " ".join(f"{b}: {r[str(b)]:.4f}" for b in args.blends))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
