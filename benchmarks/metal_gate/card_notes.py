"""Write the metal decision's comparison, bars and demo answers into a gated gap model's card.

The design of each shipped gap model's metal decision was chosen on validation (fewest insulators
called metals plus metals given a gap, as rates; ``examples/gate_gap_models.py``). This adds to the
card what a user needs to trust it: every design's validation score, the issue's bars against the
test figures (and why they are missed, from the gate's own trade-off curve), the share of crystals
measured at 0.5 eV or more that the model calls metals, and the gate's answer for the demo crystals.
Where the card splits its test MAE by the PBE parent's training split, that split is recomputed with
the gate (its answers changed). For ``CGAT-HSE-BandGap`` it also records why the design with
the best validation score (the HSE model transferred from the jointly gated PBE network,
``hse_from_joint_pbe.json``) was not shipped.

    python benchmarks/metal_gate/card_notes.py runs/models/gated/CGAT-PBE-BandGap
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")

import torch  # noqa: E402

from matgl_cgat import CGAT  # noqa: E402
from matgl_cgat._io import atomic_write_text  # noqa: E402
from matgl_cgat.predict import example_structures  # noqa: E402

HERE = Path(__file__).parent
#: Validation score of the HSE model transferred from the jointly gated PBE network (insulators called
#: metals 6.0% + metals given a gap 10.8%, its card's ``metal_gate.val_after``; examples/cross_functional.py
#: --parent runs/models/joint/CGAT-PBE-BandGap --target gap_hse --metal-weight 1 ...).
JOINT_PBE_VAL_SCORE = 0.1684
BARS = {"insulators_called_metals": 0.02, "metals_given_gap": 0.08, "measured_insulators_called_metals": 0.03}


def val_score(figures: dict) -> float:
    return round(figures["insulators_called_metals"] + figures["metals_given_gap"], 4)


def demo_answers(model) -> dict:
    """The gate's decision and metal probability, and the gap, for each demo crystal: lists, one entry per
    output (one for a single-fidelity model, one per fidelity for a multi-fidelity one)."""
    out = {}
    converter = model.graph_converter()
    model.eval()
    with torch.no_grad():
        for name, structure in example_structures().items():
            g = converter.get_graph(structure)[0]
            decided, probability = model.metal_decision(g)
            gap = model.outputs(g)[0]
            out[name] = {"metal": [bool(v) for v in decided[0]],
                         "metal_probability": [round(float(v), 3) for v in probability[0]],
                         "gap_eV": [round(float(v), 3) for v in gap[0]]}
    return out


def overlap_split(model, card: dict, graph_cache: Path) -> None:
    """Recompute the card's test MAE split by whether the PBE parent trained on a crystal, with the gate."""
    import numpy as np

    from matgl_cgat.data import default_data_dir, load_dataset, load_splits, split_from_file

    data_dir = Path(default_data_dir())
    target = card["property"]
    test = split_from_file(load_dataset(data_dir / "mp_gap.jsonl.gz", target, cache_dir=graph_cache, progress=False),
                           data_dir / "splits.json", target).test
    parent_train = set(load_splits(data_dir / "splits.json", "gap_pbe")["train"])
    seen = np.array([i in parent_train for i in test.ids])
    errors = np.abs(np.asarray(model.predict_dataset(test), dtype=float).ravel() - test.labels[target])
    split = card["test_mae_split_by_parent_overlap"]
    split["seen_by_parent"] = {"n": int(seen.sum()), "mae": float(errors[seen].mean())}
    split["not_seen_by_parent"] = {"n": int((~seen).sum()), "mae": float(errors[~seen].mean())}


def bars(test_after: dict, measured_after: dict) -> dict:
    """The issue's bars against the test figures, per output that has metals in its test split."""
    out = {}
    for column, test in test_after.items():
        if not test.get("n_metals"):
            continue  # GLLB-SC / SCAN test splits hold no metals: no rate to hold against a bar
        measured = measured_after.get(column, {}).get("insulators_called_metals")
        out[column] = {
            "insulators_called_metals": {"bar": BARS["insulators_called_metals"],
                                         "test": round(test["insulators_called_metals"], 4)},
            "metals_given_gap": {"bar": BARS["metals_given_gap"], "test": round(test["metals_given_gap"], 4)},
            "measured_insulators_called_metals": {
                "bar": "PBE's own 6% is inherited" if "pbe" in column else BARS["measured_insulators_called_metals"],
                "measured": None if measured is None else round(measured, 4)},
        }
    return out


def bars_verdict(gate: dict) -> tuple[bool, str]:
    """Whether every bar is met on test, and if not why, read off this gate's own trade-off curve."""
    numeric = [(v["test"] if "test" in v else v["measured"], v["bar"]) for b in gate["bars"].values()
               for v in b.values() if isinstance(v.get("bar"), float)]
    met = all(value is not None and value <= bar for value, bar in numeric)
    if met:
        return True, ""
    curve = gate["test_trade_off"]
    best = curve["lowest_metals_given_gap_with_insulators_called_metals_at_most"]["0.02"]
    column = curve["column"]
    own = gate["test_before"][column]["insulators_called_metals"]
    reach = ("no threshold calls as few as 2% of insulators metals: the regression alone already calls "
             f"{own:.1%} of them metals and a gate can only add metal calls" if best is None else
             f"with at most 2% of insulators called metals, the best threshold still gives {best:.1%} of metals a gap")
    return False, (f"on this gate's own test trade-off ({column}, metal_gate.test_trade_off): {reach}; the 8% bar for "
                   "metals given a gap needs a better classifier, not another threshold (docs/results.md 10.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    args = parser.parse_args()
    model = CGAT.load(args.folder)
    path = args.folder / "model.json"
    doc = json.loads(path.read_text())
    card = doc["metadata"]
    gate = card["metal_gate"]
    report_path = HERE / f"{card['name']}_gate.json"
    if report_path.is_file():  # every design measured on this model, by the validation score the choice used
        report = json.loads(report_path.read_text())
        gate["designs_compared_on_validation"] = {
            d: {c: val_score(v) for c, v in report[d]["val"].items() if v.get("n_metals")}
            for d in ("before", "gate", "hurdle", "joint") if d in report}
    if card["name"] == "CGAT-HSE-BandGap":
        sigma = json.loads((HERE / "hse_from_joint_pbe_sigma.json").read_text())["val"]
        gate.setdefault("designs_compared_on_validation", {})["transferred from the jointly gated PBE network"] = {
            "gap_hse": JOINT_PBE_VAL_SCORE,
            "rejected": f"best validation score, but its refitted uncertainty head is degenerate on validation "
                        f"(mean sigma {sigma['mean_sigma']:.0f} eV, {sigma['coverage_68']:.0%} of errors inside the "
                        f"68% interval; benchmarks/metal_gate/hse_from_joint_pbe_sigma.json): every shipped model "
                        f"carries a usable sigma, so the next design on validation ships (the rejection rests on "
                        f"validation figures only)"}
    if "test_mae_split_by_parent_overlap" in card:
        overlap_split(model, card, args.graph_cache)
    gate["bars"] = bars(gate["test_after"], gate["measured_after"])
    gate["bars_met"], gate["why_not"] = bars_verdict(gate)
    gate["demo"] = demo_answers(model)
    gate["how_to_move_the_threshold"] = (
        "model.set_metal_threshold(logit): a lower logit calls more crystals metals; metal_gate.test_trade_off gives "
        "both error rates at each threshold on the test split (chosen here on validation)")
    doc["metadata"] = card
    atomic_write_text(path, json.dumps(doc, indent=4, default=str))
    print(json.dumps({k: gate[k] for k in ("bars", "demo")}, indent=1))


if __name__ == "__main__":
    main()
