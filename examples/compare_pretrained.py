"""Which pretrained model should I use for this property? Every candidate on the same test crystals.

``compare_models.py`` trains models from scratch for a few minutes each, which says how the
architectures learn, not what a user gets today. This script scores what a user can pick up ready-made
for one property, on the fixed test split of that property in the shared data:

* the shipped CGAT models that predict it (a multi-fidelity model at the matching fidelity; a Δ-model
  through its universal potential, where that potential is at hand, else listed as not at hand);
* MatGL's own pretrained property models (``--matgl-models``, a folder holding MatGL's releases:
  ``M3GNet-MP-2018.6.1-Eform`` and ``MEGNet-MP-2018.6.1-Eform`` for formation energies,
  ``MEGNet-MP-2019.4.1-BandGap-mfi`` at the matching fidelity for band gaps, its HSE fidelity for
  measured gaps); they load only on MatGL 1.3 (the [dgl] stack), through MatGL's own unpickling loader,
  so point it only at MatGL's unchanged release folders;
* for a formation enthalpy, a universal potential's zero-shot value (``--potential``: a MatGL
  potential's folder or a wheel-shipped name such as ``chgnet:r2scan``), with its own elemental
  references (static energies, cached under ``--cache``).

MatGL's models and the universal potentials were trained on Materials Project data that holds most of
these test crystals (the band-gap model on the very gaps ``mp_gap`` joins), so their errors here are
optimistic for new crystals; the CGAT models never trained on these test splits.

    python examples/compare_pretrained.py --target e_form_exp --matgl-models ../shared/models/matgl \\
        --potential ../shared/models/matgl/M3GNet-MatPES-r2SCAN-v2025.1-PES --delta-potential \\
        ../shared/models/matgl/M3GNet-MatPES-r2SCAN-v2025.1-PES
    python examples/compare_pretrained.py --target gap_hse --matgl-models ../shared/models/matgl --n 200

Prints a table (MAE, RMSE, crystals scored, structures per second on this machine) and writes
``--out`` (JSON, with the command).
"""

from __future__ import annotations

import os

os.environ.setdefault("DGLBACKEND", "pytorch")

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import matgl
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import TARGETS, default_data_dir, load_splits, read_structures

#: target -> (data file, splits file) for the PBE targets that TARGETS (the higher fidelities) leaves out
PBE_FILES = {"e_form_pbe": ("mp_gap.jsonl.gz", "splits.json"), "gap_pbe": ("mp_gap.jsonl.gz", "splits.json")}
#: MEGNet-MP-2019.4.1-BandGap-mfi's fidelity index for each gap target (measured gaps: its HSE fidelity)
MFI_FIDELITY = {"gap_pbe": 0, "gap_gllbsc": 1, "gap_hse": 2, "gap_scan": 3, "gap_exp": 2}
MATGL_EFORM = ("M3GNet-MP-2018.6.1-Eform", "MEGNet-MP-2018.6.1-Eform")
MATGL_GAP = "MEGNet-MP-2019.4.1-BandGap-mfi"


def test_split(target: str, n: int):
    data = default_data_dir()
    file, splits = PBE_FILES.get(target) or (TARGETS[target].file, TARGETS[target].splits)
    ids = load_splits(data / splits, target)["test"]
    records = read_structures(data / file, target, ids=ids[:n] if n else ids)
    return records.ids, records.structures, np.asarray(records.labels[target], dtype=float)


def shipped_candidates(target: str) -> dict:
    """{shown name: (model name, fidelity)} for the shipped CGAT models predicting ``target``."""
    from matgl_cgat.pretrained import available_models

    out = {}
    for name, folder in available_models().items():
        card = json.loads((folder / "model.json").read_text()).get("metadata") or {}
        columns = card.get("label_columns") or {}
        if card.get("property") == target:
            out[name] = (name, None)
        for fidelity, column in columns.items():
            if column == target:
                out[f"{name} [{fidelity}]"] = (name, fidelity)
    return out


def timed(predict, structures) -> tuple[np.ndarray, float]:
    t0 = time.time()
    pred = np.asarray(predict(structures), dtype=float).ravel()
    return pred, len(structures) / max(time.time() - t0, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=sorted({*TARGETS, *PBE_FILES}))
    parser.add_argument("--n", type=int, default=0, help="score the first N test crystals (0: all)")
    parser.add_argument("--matgl-models", type=Path, default=None, help="folder with MatGL's release folders")
    parser.add_argument("--potential", default=None, help="a universal potential's zero-shot row (formation enthalpy)")
    parser.add_argument("--delta-potential", default=None,
                        help="where a shipped Δ-model's potential is, when not in MatGL's cache (a folder)")
    parser.add_argument("--cache", type=Path, default=Path("runs/potential_cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ids, structures, y = test_split(args.target, args.n)
    energy = args.target.startswith("e_form")
    rows: list[dict] = []

    def add(name: str, pred: np.ndarray | None, speed: float | None, note: str = "") -> None:
        if pred is None:
            rows.append({"model": name, "n": 0, "note": note})
        else:
            ok = np.isfinite(pred)
            err = np.abs(pred[ok] - y[ok])
            rows.append({"model": name, "n": int(ok.sum()), "n_without_value": int((~ok).sum()),
                         "mae": round(float(err.mean()), 4), "rmse": round(float(np.sqrt((err**2).mean())), 4),
                         "structures_per_s": round(speed, 1), "note": note})
        print(json.dumps(rows[-1]), flush=True)

    from matgl_cgat.potentials import MissingPotentialError, anchor_of, anchored_predictions

    for shown, (name, fidelity) in shipped_candidates(args.target).items():
        model = matgl.load_model(name)
        if anchor_of(model) is not None:
            try:
                anchor_of(model).source(args.delta_potential)
            except (MissingPotentialError, ValueError) as exc:
                add(shown, None, None, f"its potential is not at hand: {str(exc)[:160]}")
                continue
            with tempfile.TemporaryDirectory() as fresh:  # energies computed now, not read from a cache
                pred, speed = timed(lambda s: anchored_predictions(model, s, ids, potential=args.delta_potential,
                                                                   cache_dir=fresh, on_error="skip"), structures)
            add(shown, pred, speed, f"Δ-model on {anchor_of(model).potential}")
            continue
        # values and speed beside MatGL's predict_structure, which probes no strain (see --strain-check)
        pred, speed = timed(lambda s: [model.predict_structure(x, fidelity=fidelity, check_strain=False) if fidelity
                                       else model.predict_structure(x, check_strain=False) for x in s], structures)
        add(shown, pred, speed, "CGAT (never trained on this test split)")

    if args.matgl_models is not None:
        from matgl_cgat.pretrained import matgl_original_load_model

        if int(matgl.__version__.split(".")[0]) >= 2:
            print(f"MatGL {matgl.__version__}: MatGL's 2018-2019 property models load on MatGL 1.3 (the [dgl] "
                  "stack) only; skipped", file=sys.stderr)
        elif energy:
            for name in MATGL_EFORM:
                model = matgl_original_load_model(str(args.matgl_models / name))
                with torch.no_grad():
                    pred, speed = timed(lambda s: [float(model.predict_structure(x)) for x in s], structures)
                add(name, pred, speed, "MatGL, PBE (MP 2018) formation energy; trained on most of these crystals")
        elif args.target in MFI_FIDELITY:
            model = matgl_original_load_model(str(args.matgl_models / MATGL_GAP))
            state = torch.tensor([MFI_FIDELITY[args.target]])
            with torch.no_grad():
                pred, speed = timed(lambda s: [max(float(model.predict_structure(x, state_attr=state)), 0.0)
                                               for x in s], structures)
            add(f"{MATGL_GAP} [fidelity {MFI_FIDELITY[args.target]}]", pred, speed,
                "MatGL; clipped at 0 eV as the CGAT gap models; trained on most of these gaps")

    if args.potential is not None and energy:
        from matgl_cgat.potentials import elemental_references, formation_enthalpies, load_potential

        source = load_potential(args.potential)
        elements = {el.symbol for s in structures for el in s.composition.elements}
        references = elemental_references(source, elements, data_file=default_data_dir() / "mp_gap.jsonl.gz",
                                          cache_dir=args.cache, on_error="skip")  # once, cached: not timed
        with tempfile.TemporaryDirectory() as fresh:  # energies computed now, not read from a cache
            pred, speed = timed(lambda s: formation_enthalpies(s, source, ids=ids, references=references,
                                                               cache_dir=fresh, on_error="skip").e_form, structures)
        add(f"{source.name} (zero-shot)", pred, speed, "universal potential, static energies, its own references")

    if not rows:
        raise SystemExit(f"no ready-made model for {args.target} here (no shipped CGAT predicts it; give "
                         "--matgl-models or --potential for more candidates)")
    width = max(len(r["model"]) for r in rows)
    units = "eV/atom" if energy else "eV"
    print(f"\n{args.target}: {len(y)} test crystals, errors in {units}")
    for r in sorted(rows, key=lambda r: r.get("mae", np.inf)):
        if "mae" in r:
            print(f"{r['model']:<{width}}  MAE {r['mae']:.3f}  RMSE {r['rmse']:.3f}  n {r['n']:>5}  "
                  f"{r['structures_per_s']:7.1f}/s  {r['note']}")
        else:
            print(f"{r['model']:<{width}}  -  {r['note']}")
    if args.out:
        atomic_write_text(args.out, json.dumps({"target": args.target, "n_test": len(y), "rows": rows,
                                                "command": "python examples/compare_pretrained.py "
                                                + " ".join(shlex.quote(a) for a in sys.argv[1:])}, indent=1))


if __name__ == "__main__":
    main()
