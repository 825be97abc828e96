"""Route (d) of issue #34: pre-train CGAT on a universal potential's formation enthalpies of the shared crystals.

Labels the PBE training split of ``mp_gap.jsonl.gz`` (28,473 crystals; its validation split for
choosing the epoch) with the potential's values from ``examples/potential_labels.py`` and trains
``--parent`` (``CGAT-PBE-Eform``) on them, all weights, one triangular cycle. Crystals in the
validation or test split of either higher-fidelity target (``hifi_eform_splits.json``) are left out,
so that no crystal a route is later scored on was seen, even with a pseudo-label. The result is a
plain CGAT: fine-tuned on real r2SCAN or measured labels (``benchmarks/potential_routes.py --routes
pseudo``) it needs no potential at run time. Resumable (one run folder).

    python benchmarks/pseudo_label_pretrain.py --labels runs/labels/M3GNet-MatPES-r2SCAN --epochs 3 \\
        --run runs/pseudo/M3GNet-MatPES-r2SCAN --save runs/models/CGAT-PseudoR2SCAN-Eform
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path

import torch

import matgl
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_dataset, split_from_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--parent", default="CGAT-PBE-Eform")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--save", type=Path, required=True)
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = default_data_dir()
    with open(args.labels / "mp_gap.csv") as f:
        values = {row["id"]: float(row["e_form_potential"]) for row in csv.DictReader(f)}
    potential = json.loads((args.labels / "mp_gap.json").read_text())["potential"]
    held_out = set()
    hifi = json.loads((data / "hifi_eform_splits.json").read_text())
    for target in hifi.values():
        held_out |= set(target["val"]) | set(target["test"])
    ds = load_dataset(data / "mp_gap.jsonl.gz", "e_form_pbe", cache_dir=args.graph_cache)
    parts = split_from_file(ds, data / "splits.json", "e_form_pbe")
    kept, pseudo = {}, {}
    for name in ("train", "val"):
        part = parts[name]
        keep = [k for k, i in enumerate(part.ids) if i in values and i not in held_out]
        kept[name] = {"n": len(keep), "held_out": sum(i in held_out for i in part.ids),
                      "no_value": sum(i not in values for i in part.ids)}
        pseudo[name] = part.subset(keep).with_label("e_form_potential", values)
    print(kept, flush=True)
    parent = matgl.load_model(args.parent)
    t0, cpu0 = time.time(), time.process_time()
    model = parent.finetune(pseudo["train"], pseudo["val"], policy="full", renormalize=True, epochs=args.epochs,
                            lr=args.lr, period=args.epochs, batch_size=args.batch_size, precision=args.precision,
                            output_min=None, out_dir=args.run)
    record = model.metadata["finetune"]
    model.metadata = {
        "name": args.save.name, "property": "e_form_potential", "units": "eV/atom",
        "meaning": f"formation enthalpy as the universal potential {potential.split('|')[0]} gives it "
                   "(its own elemental references; static energies on the MP cells): pseudo-labels",
        "parent": args.parent, "preset": (parent.metadata or {}).get("preset", "small"),
        "training": {k: record[k] for k in ("epochs", "lr", "period", "best_epoch", "best_val_mae")},
        "crystals": kept, "potential": potential, "wall_seconds": round(time.time() - t0),
        "cpu_seconds": round(time.process_time() - cpu0),
        "command": "python benchmarks/pseudo_label_pretrain.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    model.save(args.save)
    atomic_write_text(args.run / "summary.json", json.dumps(model.metadata, indent=1))
    print(json.dumps(model.metadata["training"]), flush=True)


if __name__ == "__main__":
    main()
