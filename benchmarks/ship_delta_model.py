"""Ship a Δ-model of issue #34: the route and seed chosen on validation, with its anchor, sigma head and card.

Reads ``<runs>/<target>_routes.json`` of ``benchmarks/potential_routes.py``, keeps the CGAT routes
(``delta``, ``delta_corrected``) at the largest training size, and picks the row with the lowest
validation MAE (never the test score). Its finished run folder is reloaded (``finetune`` on a finished
folder returns the best weights at once), the potential anchor goes on the card (the potential's
identity, all elemental references it has, the per-element correction of that route), then a sigma
head and the training domain are fitted as for every shipped model (``examples/fit_uncertainty.py``)
on the residual labels, and the test split is scored once, for the card.

    python benchmarks/ship_delta_model.py --target e_form_r2scan --labels runs/labels/M3GNet-MatPES-r2SCAN \\
        --runs runs/potential_routes --save matgl_cgat/pretrained/CGAT-r2SCAN-Eform-Delta
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

import matgl
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import (default_data_dir, load_dataset, nested_subsets, read_structures, split_from_file,
                             target_info, yardstick_table, yardstick_values)
from matgl_cgat.domain import TrainingDomain
from matgl_cgat.potentials import ElementCorrection, PotentialAnchor, parse_name
from matgl_cgat.uncertainty import calibration, fit_sigma_head, predict_with_sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=["e_form_r2scan", "e_form_exp"])
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--runs", type=Path, default=Path("runs/potential_routes"))
    parser.add_argument("--parent", default="CGAT-PBE-Eform")
    parser.add_argument("--save", type=Path, required=True)
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = default_data_dir()
    info = target_info(args.target)
    rows = json.loads((args.runs / f"{args.target}_routes.json").read_text())
    size = max(r["size"] for r in rows)
    cgat_rows = [r for r in rows if r["route"] in ("delta", "delta_corrected") and r["size"] == size]
    chosen = min(cgat_rows, key=lambda r: r["val_mae"])
    print(f"chosen on validation: {chosen['route']} seed {chosen['seed']} (val {chosen['val_mae']:.4f})")
    with open(args.labels / "hifi_eform.csv") as f:
        potential = {row["id"]: float(row["e_form_potential"]) for row in csv.DictReader(f)}
    # the references the labels were made with: hifi_eform's, and mp_gap's where that file was labelled too
    # (a potential as slow as CHGNet labelled hifi_eform alone: its anchor knows hifi_eform's elements)
    cards = [json.loads((args.labels / f"{stem}.json").read_text()) for stem in ("mp_gap", "hifi_eform")
             if (args.labels / f"{stem}.json").is_file()]
    labels_card = cards[-1]
    references = {el: r["energy_per_atom"] for card in cards for el, r in card["references"].items()}
    origins = {el: r["origin"] for card in cards for el, r in card["references"].items()}

    ds = load_dataset(data / info.file, args.target, cache_dir=args.graph_cache)
    parts = split_from_file(ds, data / info.splits, args.target)
    train, val, test = parts["train"], parts["val"], parts["test"]
    without = [i for i in train.ids if i not in potential]  # as benchmarks/potential_routes.py did
    train = train.subset([k for k, i in enumerate(train.ids) if i in potential])
    subset = nested_subsets(len(train), [size], seed=chosen["seed"])[0]
    records = read_structures(data / info.file, args.target)
    structure = dict(zip(records.ids, records.structures))
    # the residuals exactly as benchmarks/potential_routes.py computed them (same arrays, same order), so
    # that the finished run folder is recognised as this run
    pot = {name: np.array([potential[i] for i in part.ids]) for name, part in
           (("train", train), ("val", val), ("test", test))}
    s = {name: [structure[i] for i in part.ids] for name, part in (("train", train), ("val", val), ("test", test))}
    correction = None
    start = pot
    if chosen["route"] == "delta_corrected":
        correction = ElementCorrection.fit([s["train"][i] for i in subset], pot["train"][subset],
                                           train.labels[args.target][subset])
        start = {name: correction.apply(s[name], pot[name]) for name in ("train", "val", "test")}
    base = {i: b for part, name in ((train, "train"), (val, "val"), (test, "test")) for i, b in zip(part.ids, start[name])}
    residual = {i: yy - base[i] for part in (train, val, test) for i, yy in zip(part.ids, part.labels[args.target])}
    train = train.subset(subset)
    parent = matgl.load_model(args.parent)
    run = args.runs / f"{args.target}_{chosen['route']}_n{size}_s{chosen['seed']}"
    model = parent.finetune(train.with_label("residual", residual), val.with_label("residual", residual),
                            policy="full", renormalize=True, epochs=20, lr=3e-4, period=20, batch_size=64,
                            seed=chosen["seed"], output_min=None, precision="bf16-mixed", out_dir=run)
    fit = fit_sigma_head(model, train.with_label("residual", residual), val.with_label("residual", residual),
                         target=["residual"], hidden=32)
    test_r = test.with_label("residual", residual)
    pred_r, sigma = predict_with_sigma(fit.model, test_r)
    pred = np.array([base[i] for i in test.ids]) + pred_r.ravel()
    y = test.labels[args.target]
    cal = calibration(y, pred, sigma.ravel())
    mae = float(np.abs(pred - y).mean())
    assert abs(mae - chosen["test_mae"]) < 2e-3, (mae, chosen["test_mae"])  # the run reloaded is the run scored
    yard = yardstick_table(args.target, yardstick_values(data, args.target, list(test.ids)), {"this_model": pred})
    zero_shot = [r for r in rows if r["route"] == "zero_shot"][0]
    spec = _potential_argument(labels_card["command"])
    named = parse_name(spec)
    anchor = PotentialAnchor(named.spec if named else Path(spec).name, labels_card["potential"], references,
                             correction, "static", origins)
    if named:
        needs = (f"the universal potential {named.spec} at run time, whose weights ship in its pip wheel: "
                 f"{named.install}")
    else:
        needs = (f"the universal potential {anchor.potential} at run time, on the MatGL 1.3 ([dgl]) stack: put its "
                 "folder in MatGL's cache (~/.cache/matgl/NAME) or pass --potential FOLDER; a shared copy is "
                 f"../shared/models/matgl/{anchor.potential}")
    record = model.metadata["finetune"]
    card = {
        "name": args.save.name, "property": args.target, "units": "eV/atom", "functional": info.functional,
        "meaning": info.meaning,
        "route": f"{chosen['route']}: {anchor.potential} formation enthalpy"
                 + (" + per-element correction" if correction else "") + " + this CGAT's output (Δ-learning, "
                 f"full transfer from {args.parent})",
        "needs": needs,
        "elements_with_references": len(references),
        "anchor": anchor.as_card(),
        "data": f"{info.file} of the shared mp_gap data, see shared/data/mp_gap/README.md",
        "split": f"{info.splits}[{args.target!r}]: train {len(train)} (left out, no potential value: {without}), "
                 f"val {len(val)}, test {len(test)}",
        "preset": (parent.metadata or {}).get("preset", "small"), "parent": args.parent, "policy": "full",
        "output_min": None,
        "training": {k: record[k] for k in ("epochs", "lr", "period", "best_epoch", "best_val_mae", "seed")},
        "chosen_by": f"lowest validation MAE among {len(cgat_rows)} CGAT-route runs at {size} labels",
        "val_mae": chosen["val_mae"], "test_mae": mae,
        "runs_compared": {f"{r['route']} seed {r['seed']}": {"val_mae": round(r["val_mae"], 4),
                                                              "test_mae": round(r["test_mae"], 4)}
                          for r in cgat_rows},
        "test_predictions": {i: round(float(v), 5) for i, v in zip(test.ids, pred)},
        "test_mae_potential_zero_shot": zero_shot["test_mae"],
        "test_yardsticks": yard,
        "domain": TrainingDomain.from_dataset(train, source=f"{info.file}, {args.target} train").to_dict(),
        "uncertainty": {"method": "sigma head on the frozen network: Laplace NLL on training residuals, "
                                  f"log-sigma recalibrated on validation (a={fit.shift:.3f}, b={fit.slope:.3f})",
                        "test": {k: round(v, 4) if isinstance(v, float) else v for k, v in cal.to_dict().items()
                                 if k not in ("levels", "observed")}},
        "command": "python benchmarks/ship_delta_model.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    fit.model.save(args.save, metadata=card)
    atomic_write_text(Path("benchmarks/uncertainty") / f"{args.save.name}.json",
                      json.dumps({"model": args.save.name, "test": cal.to_dict()}, indent=2) + "\n")
    print(f"{args.save.name}: test MAE {mae:.4f} (zero-shot potential {zero_shot['test_mae']:.4f}); coverage "
          f"{cal.coverage_68:.1%} / {cal.coverage_95:.1%}; saved to {args.save}")


def _potential_argument(command: str) -> str:
    """The ``--potential`` the labels were made with (examples/potential_labels.py's recorded command)."""
    words = shlex.split(command)
    return words[words.index("--potential") + 1]


if __name__ == "__main__":
    main()
