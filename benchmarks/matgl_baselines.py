"""MatGL's own pretrained property models beside the shipped CGAT models, on the same fixed test splits.

Issue #34 item 4. Scores ``M3GNet-MP-2018.6.1-Eform`` and ``MEGNet-MP-2018.6.1-Eform`` on the PBE
formation-energy test split of ``mp_gap.jsonl.gz`` (3,560 crystals), and
``MEGNet-MP-2019.4.1-BandGap-mfi`` at each of its fidelities (0 PBE, 1 GLLB-SC, 2 HSE, 3 SCAN) on the
matching gap test split, plus its HSE fidelity on the measured-gap test split (31 crystals). The CGAT
figures are read from the shipped model cards (the same splits). Writes ``benchmarks/matgl_baselines.json``.

Overlap: these MatGL models were trained on Materials Project 2018-2019 data (the band-gap model on
the very multi-fidelity gaps of Chen et al. 2021 that ``mp_gap`` joins), so most or all of these test
crystals are in their training data and their scores here are optimistic for new crystals; the CGAT
models never trained on these test splits.

Their folders pickle MatGL's ``Normalizer`` class, so they cannot be read weights-only on torch 2.2:
this script loads them with MatGL's own loader (``matgl_original_load_model``), trusting the shared
folder because it is MatGL's own release copied unchanged (``../shared/models/matgl/README.md``).
Never point it at folders you do not trust.

    python benchmarks/matgl_baselines.py --models ../shared/models/matgl
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

from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, load_splits, read_structures
from matgl_cgat.pretrained import available_models, matgl_original_load_model

GAP_FIDELITIES = {"gap_pbe": 0, "gap_gllbsc": 1, "gap_hse": 2, "gap_scan": 3}


def predict(model, structures, state=None) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in structures:
            value = model.predict_structure(s, state_attr=state) if state is not None else model.predict_structure(s)
            out.append(float(value))
    return np.array(out)


def score(pred, y) -> dict:
    """MAE/RMSE over the crystals with a finite prediction; the others are counted, never hidden."""
    finite = np.isfinite(pred)
    err = np.abs(pred[finite] - y[finite])
    return {"n": int(finite.sum()), "n_not_finite": int((~finite).sum()), "mae": round(float(err.mean()), 4),
            "rmse": round(float(np.sqrt((err**2).mean())), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("../shared/models/matgl"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/matgl_baselines.json"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = default_data_dir()
    rows = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    done = {(r["model"], r["target"]) for r in rows}

    def record(row):
        rows.append(row)
        print(json.dumps(row), flush=True)
        atomic_write_text(args.out, json.dumps({"rows": rows, "command": "python benchmarks/matgl_baselines.py "
                                                + " ".join(shlex.quote(a) for a in sys.argv[1:])}, indent=1))

    def test_set(target, file="mp_gap.jsonl.gz", splits="splits.json"):
        ids = load_splits(data / splits, target)["test"]
        rec = read_structures(data / file, target, ids=ids)
        return rec.structures, np.array(rec.labels[target], dtype=float)

    for name in ("M3GNet-MP-2018.6.1-Eform", "MEGNet-MP-2018.6.1-Eform"):
        if (name, "e_form_pbe") in done:
            continue
        model = matgl_original_load_model(str(args.models / name))
        structures, y = test_set("e_form_pbe")
        t0 = time.time()
        pred = predict(model, structures)
        record({"model": name, "target": "e_form_pbe", **score(pred, y),
                "structures_per_s": round(len(y) / (time.time() - t0), 1)})
    name = "MEGNet-MP-2019.4.1-BandGap-mfi"
    model = None
    for target, fidelity in [*GAP_FIDELITIES.items(), ("gap_exp", 2)]:
        if (name, target) in done:
            continue
        model = model or matgl_original_load_model(str(args.models / name))
        structures, y = (test_set(target) if target != "gap_exp" else
                         test_set(target, "exp_gap.jsonl.gz", "exp_gap_splits.json"))
        pred = np.clip(predict(model, structures, torch.tensor([fidelity])), 0.0, None)
        record({"model": name, "target": target, "fidelity": fidelity, **score(pred, y),
                "note": "predictions clipped at 0 eV, as the CGAT gap models' output bound"})
    cards = {}
    for cgat, folder in available_models().items():
        card = json.loads((folder / "model.json").read_text()).get("metadata") or {}
        cards[cgat] = {k: card.get(k) for k in ("property", "test_mae", "test_mae_per_fidelity") if k in card}
    atomic_write_text(args.out, json.dumps({"rows": rows, "cgat_cards": cards,
                                            "command": "python benchmarks/matgl_baselines.py "
                                            + " ".join(shlex.quote(a) for a in sys.argv[1:])}, indent=1))


if __name__ == "__main__":
    main()
