"""A wheel-shipped PBE potential against CGAT-PBE-Eform on a random sample of the PBE test split.

Issue #34's PBE bar asks whether a shipped model beats the best potential plus per-element correction
on the shared PBE test split. M3GNet-MatPES-PBE (the default stack's potential) was scored on all of
it (``benchmarks/potential_routes.py --target e_form_pbe``); CHGNet and SevenNet run about 1-2 crystals
a second through their ASE calculators on one core, too slow for the 35,592 crystals here, so this
script scores one on ``--n-test`` random test crystals, with its correction fitted on ``--n-train``
random training crystals, and ``CGAT-PBE-Eform`` on the very same test crystals. CHGNet 0.3.0 was
trained on the Materials Project's corrected GGA/GGA+U energies (MP2020 scheme), the same family as the
``e_form_pbe`` labels (an older MP release), so its formation enthalpy needs no further compatibility
step. Writes ``benchmarks/potential_routes/pbe_sample_<potential>.json``.

    python benchmarks/pbe_potential_sample.py --potential chgnet:0.3.0 --n-test 500 --n-train 1000
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = default_data_dir()
    splits = load_splits(data / "splits.json", "e_form_pbe")
    rng = np.random.default_rng(args.seed)
    picked = {part: sorted(rng.choice(splits[part], size=n, replace=False).tolist())
              for part, n in (("test", args.n_test), ("train", args.n_train))}
    records = read_structures(data / "mp_gap.jsonl.gz", "e_form_pbe", ids=set(picked["test"]) | set(picked["train"]))
    structure, label = dict(zip(records.ids, records.structures)), dict(zip(records.ids, records.labels["e_form_pbe"]))
    source = load_potential(args.potential)
    t0 = time.time()
    values, skipped = {}, {}
    for part in ("train", "test"):
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
        cgat = np.array([float(model.predict_structure(structure[i])) for i in test])
    report = {
        "potential": source.identity, "n_test": len(test), "n_train": len(train), "skipped": skipped,
        "test_mae": {"potential_zero_shot": round(float(np.abs(raw - y).mean()), 4),
                     "potential_corrected": round(float(np.abs(corrected - y).mean()), 4),
                     "CGAT-PBE-Eform": round(float(np.abs(cgat - y).mean()), 4)},
        "test_unseen_elements": int(sum(bool(fit.unseen(structure[i])) for i in test)),
        "labelling_seconds": round(seconds), "seed": args.seed,
        "command": "python benchmarks/pbe_potential_sample.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    name = args.potential.replace(":", "-").replace("/", "_")
    atomic_write_text(Path("benchmarks/potential_routes") / f"pbe_sample_{name}.json", json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
