"""A wheel-shipped PBE potential against CGAT-PBE-Eform on a random sample of the PBE test split.

Issue #34's PBE bar asks whether a shipped model beats the best potential plus per-element correction
on the shared PBE test split. M3GNet-MatPES-PBE (the default stack's potential) was scored on all of
it (``benchmarks/potential_routes.py --target e_form_pbe``); CHGNet and SevenNet run about 1-2 crystals
a second through their ASE calculators on one core, too slow for the 35,592 crystals here, so this
script scores one on ``--n-test`` random test crystals, with its correction fitted on ``--n-train``
random training crystals, and ``CGAT-PBE-Eform`` on the very same test crystals. CHGNet 0.3.0 was
trained on the Materials Project's corrected GGA/GGA+U energies (MP2020 scheme), the same family as the
``e_form_pbe`` labels (an older MP release), so its formation enthalpy needs no further compatibility
step. With ``--delta`` it also trains route (c') of ``benchmarks/potential_routes.py`` on the sample: a
full transfer of ``CGAT-PBE-Eform`` to the residual of the corrected potential on the training crystals,
its best epoch picked on ``--n-val`` random validation crystals (the same recipe: 20 epochs, one cycle
peaking at 3e-4, bf16-mixed). Writes ``benchmarks/potential_routes/pbe_sample_<potential>.json``.

    python benchmarks/pbe_potential_sample.py --potential chgnet:0.3.0 --n-test 400 --n-train 600 --delta
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import matgl
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_splits, read_structures
from matgl_cgat.potentials import ElementCorrection, formation_enthalpies, load_potential


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--potential", required=True)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("runs/potential_cache"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--delta", action="store_true", help="also train a Δ-CGAT on the corrected potential")
    parser.add_argument("--n-val", type=int, default=300, help="validation crystals for --delta's best epoch")
    parser.add_argument("--runs", type=Path, default=Path("runs/pbe_sample"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = default_data_dir()
    splits = load_splits(data / "splits.json", "e_form_pbe")
    rng = np.random.default_rng(args.seed)
    picked = {part: sorted(rng.choice(splits[part], size=n, replace=False).tolist())
              for part, n in (("test", args.n_test), ("train", args.n_train))}
    parts = ("train", "test")
    if args.delta:  # drawn after the others, so that the test and training samples stay those of a run without
        picked["val"] = sorted(rng.choice(splits["val"], size=args.n_val, replace=False).tolist())
        parts = ("train", "val", "test")
    records = read_structures(data / "mp_gap.jsonl.gz", "e_form_pbe", ids=set().union(*picked.values()))
    structure, label = dict(zip(records.ids, records.structures)), dict(zip(records.ids, records.labels["e_form_pbe"]))
    source = load_potential(args.potential)
    t0 = time.time()
    values, skipped = {}, {}
    for part in parts:
        ids = picked[part]
        result = formation_enthalpies([structure[i] for i in ids], source, ids=ids, cache_dir=args.cache,
                                      reference_data=data / "mp_gap.jsonl.gz", on_error="skip")
        values.update({i: float(e) for i, e in zip(ids, result.e_form) if np.isfinite(e)})
        skipped.update(result.skipped)
    seconds = time.time() - t0
    train = [i for i in picked["train"] if i in values]
    test = [i for i in picked["test"] if i in values]
    fit = ElementCorrection.fit([structure[i] for i in train], np.array([values[i] for i in train]),
                                np.array([label[i] for i in train]))
    y = np.array([label[i] for i in test])
    raw = np.array([values[i] for i in test])
    corrected = fit.apply([structure[i] for i in test], raw)
    model = matgl.load_model("CGAT-PBE-Eform")
    with torch.no_grad():
        cgat = np.array([float(model.predict_structure(structure[i], check_strain=False)) for i in test])
    delta = _delta_route(args, fit, structure, label, values, picked, test, corrected) if args.delta else None
    report = {
        "potential": source.identity, "n_test": len(test), "n_train": len(train), "skipped": skipped,
        "test_mae": {"potential_zero_shot": round(float(np.abs(raw - y).mean()), 4),
                     "potential_corrected": round(float(np.abs(corrected - y).mean()), 4),
                     "CGAT-PBE-Eform": round(float(np.abs(cgat - y).mean()), 4)},
        "test_unseen_elements": int(sum(bool(fit.unseen(structure[i])) for i in test)),
        **({"delta_corrected": delta} if delta else {}),
        "labelling_seconds": round(seconds), "seed": args.seed,
        "command": "python benchmarks/pbe_potential_sample.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    name = args.potential.replace(":", "-").replace("/", "_")
    atomic_write_text(Path("benchmarks/potential_routes") / f"pbe_sample_{name}.json", json.dumps(report, indent=1))
    print(json.dumps(report))


def _delta_route(args, fit, structure, label, values, picked, test, corrected_test) -> dict:
    """Route (c') on the sample: CGAT-PBE-Eform transferred to the corrected potential's residual."""
    from matgl_cgat.data import load_dataset

    ids = {part: [i for i in picked[part] if i in values] for part in ("train", "val")}
    ids["test"] = test
    start = {part: fit.apply([structure[i] for i in ids[part]], np.array([values[i] for i in ids[part]]))
             for part in ("train", "val")}
    start["test"] = corrected_test
    sets = {part: load_dataset([structure[i] for i in ids[part]], "residual", ids=ids[part], progress=False,
                               labels=[label[i] - b for i, b in zip(ids[part], start[part])])
            for part in ("train", "val", "test")}
    torch.manual_seed(args.seed)
    model = matgl.load_model("CGAT-PBE-Eform").finetune(
        sets["train"], sets["val"], policy="full", renormalize=True, epochs=20, lr=3e-4, period=20, batch_size=64,
        seed=args.seed, output_min=None, precision="bf16-mixed", out_dir=args.runs / args.potential.replace(":", "-"))
    mae = {}
    for part in ("val", "test"):
        pred = start[part] + np.asarray(model.predict_dataset(sets[part]), dtype=float).ravel()
        mae[part] = round(float(np.abs(pred - np.array([label[i] for i in ids[part]])).mean()), 4)
    val_corrected = round(float(np.abs(start["val"] - np.array([label[i] for i in ids["val"]])).mean()), 4)
    return {"val_mae": mae["val"], "test_mae": mae["test"], "val_mae_corrected_alone": val_corrected,
            "n_val": len(ids["val"]), "best_epoch": model.metadata["finetune"]["best_epoch"]}


if __name__ == "__main__":
    main()
