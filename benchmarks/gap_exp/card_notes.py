"""Write the parent comparison and what the model does not decide into the CGAT-Exp-BandGap card.

The three parents (``CGAT-PBE-BandGap``, ``CGAT-HSE-BandGap``: full transfer, seeds 0-2, rows in
``from_CGAT-*.json``; ``CGAT-MultiFidelity-BandGap``: an ``exp`` fidelity, seeds 0-1, in
``from_mf_lr1e-2_60ep.json``) are compared by mean validation MAE, the rule fixed before the runs.

    python benchmarks/gap_exp/card_notes.py matgl_cgat/pretrained/CGAT-Exp-BandGap
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from matgl_cgat._io import atomic_write_text

HERE = Path(__file__).parent


def summary(rows: list[dict], val_key: str = "best_val_mae") -> dict:
    val = [r[val_key] for r in rows]
    test = [r["test_mae"] for r in rows]
    return {"seeds": len(rows), "val_mae_mean": round(float(np.mean(val)), 4),
            "test_mae_mean": round(float(np.mean(test)), 4), "test_mae_std": round(float(np.std(test)), 4)}


def main(folder: Path) -> None:
    parents = {name: summary(json.loads((HERE / f"from_{name}.json").read_text()))
               for name in ("CGAT-PBE-BandGap", "CGAT-HSE-BandGap")}
    mf = json.loads((HERE / "from_mf_lr1e-2_60ep.json").read_text())
    parents["CGAT-MultiFidelity-BandGap (exp fidelity)"] = {**summary(mf["rows"]), "val_mae_mean": mf["val_mae_eV"]}
    path = folder / "model.json"
    doc = json.loads(path.read_text())
    card = doc["metadata"]
    card["parent_choice"] = {
        "rule": "lowest mean validation MAE over seeds (eV), fixed before the runs; test figures reported, not used",
        "parents": parents,
        "chosen": card["parent"],
        "note": "the PBE and HSE parents tie on validation (0.431 / 0.432); only 3 of the 31 test crystals are new "
                "to the PBE parent, so the unseen figure is not a guide: from the HSE parent, 20 unseen test "
                "crystals score about 0.50 eV (benchmarks/gap_exp/from_CGAT-HSE-BandGap.json)",
    }
    card["metal_decision"] = (
        "none: every crystal in exp_gap.jsonl.gz is a non-metal, so this model answers 'what gap would be measured "
        "for this non-metal'. It gives a metal a gap (copper: about 0.8 eV); decide metal-or-not first (for example "
        "from a DFT gap model). A metal gate fitted on its network with HSE labels (examples/gate_gap_models.py "
        "--gate-labels gap_hse) called 8.7% of the 287 crystals measured at 0.5 eV or more metals (the bar is 3%), "
        "against 0% without it, so none is attached (docs/results.md 10.2).")
    card["uncertainty_meaning"] = "sigma describes the error against the measured gaps (optical or fundamental, as compiled)"
    doc["metadata"] = card
    atomic_write_text(path, json.dumps(doc, indent=4, default=str))
    print(json.dumps(card["parent_choice"], indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
