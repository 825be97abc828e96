"""Give a trained CGAT a domain check that sees structure, and measure whether it finds the bad answers.

    python examples/fit_novelty.py --model CGAT-PBE-Eform --save matgl_cgat/pretrained/CGAT-PBE-Eform

1. a seeded subset of the training split's pooled representations is stored in the model, the
   threshold is placed on the validation split and the widening of sigma beyond it measured there
   (:func:`matgl_cgat.novelty.fit_representation_domain`); run it after ``fit_uncertainty.py``;
2. the check is measured on the test split, on the test crystals whose chemical system (set of
   elements) no training crystal has ("held-out chemistries": the split was random, so these are
   the crystals whose chemistry the model never saw), and on the textbook crystals
   (:mod:`matgl_cgat.textbook`: is diamond flagged?): MAE of flagged against unflagged crystals,
   the 68% coverage of the widened sigma, written to ``--results`` and the model card.

The network, the uncertainty head and the gate are not changed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import matgl
import numpy as np
import torch

import matgl_cgat  # noqa: F401  (shipped names for matgl.load_model)
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import model_splits
from matgl_cgat.graph import ELEMENTS, graph_fields
from matgl_cgat.novelty import fit_representation_domain, measure_novelty
from matgl_cgat.textbook import textbook_crystals


def chemical_systems(dataset) -> list[frozenset]:
    """Each crystal's set of elements, read from its graph."""
    return [frozenset(ELEMENTS[int(t)] for t in np.unique(graph_fields(dataset[i][0])["node_type"].numpy()))
            for i in range(len(dataset))]


def textbook_novelty(model) -> dict:
    """Novelty, flag and (widened) sigma of every textbook crystal."""
    out = {}
    converter = model.graph_converter()
    model.eval()
    for crystal in textbook_crystals():
        g = converter.get_graph(crystal.structure())[0]
        with torch.no_grad():
            said = model.answers(g)
        out[crystal.name] = {"novelty": round(float(said.novelty[0]), 3),
                             "flagged": bool(float(said.novelty[0]) > float(model.novelty.threshold)),
                             "value": round(float(said.value[0, 0]), 4),
                             "sigma": None if said.sigma is None else round(float(said.sigma[0, 0]), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="shipped name or model folder")
    parser.add_argument("--target", default=None, help="label (default: the card's property)")
    parser.add_argument("--data", type=Path, default=None, help="data file or folder (default: shared mp_gap)")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--flag-share", type=float, default=0.05, help="share of validation crystals flagged")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", type=Path, default=None, help="model folder to write (may be the source)")
    parser.add_argument("--results", type=Path, default=None, help="JSON (default benchmarks/novelty/<name>.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model = matgl.load_model(args.model)
    card = dict(model.metadata or {})
    name = card.get("name") or Path(args.model).name
    if getattr(model, "fidelities", None):
        parser.error("multi-fidelity models: not yet (the check would need one threshold per fidelity)")
    if not (args.target or card.get("property")):
        parser.error("the model card names no property; pass --target")
    target, parts = model_splits(model, args.target, args.data, cache_dir=args.graph_cache)
    started = time.time()
    fit = fit_representation_domain(model, parts.train, parts.val, target=target, flag_share=args.flag_share)
    test, novelty = measure_novelty(fit.model, parts.test, target)
    seen = set(chemical_systems(parts.train))
    unseen = [i for i, s in enumerate(chemical_systems(parts.test)) if s not in seen]
    held_out = measure_novelty(fit.model, parts.test.subset(unseen), target)[0] if len(unseen) >= 3 else None
    textbook = textbook_novelty(fit.model)
    seconds = time.time() - started

    def rounded(report):
        return None if report is None else {k: round(v, 4) if isinstance(v, float) else v
                                            for k, v in report.to_dict().items()}

    summary = {
        "method": f"mean distance to the 5 nearest of {fit.n_points} training crystals in the first 16 principal "
                  "components of the standardised pooled representation, over the median validation crystal's; "
                  f"flagged above {fit.threshold:.3f} (the {1 - args.flag_share:.0%} quantile of validation), "
                  f"sigma of flagged crystals x{fit.widen:.3f} (measured on validation)",
        "threshold": round(fit.threshold, 4), "widen": round(fit.widen, 4),
        "val": rounded(fit.val), "test": rounded(test),
        "test_unseen_chemical_systems": rounded(held_out),
        "textbook_flagged": sorted(k for k, v in textbook.items() if v["flagged"]),
        "command": "python " + shlex.join(["examples/fit_novelty.py", *sys.argv[1:]]),
    }
    results = args.results or Path("benchmarks/novelty") / f"{name}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results, json.dumps({"model": name, "target": target, "split": parts.split,
                                           "seconds": round(seconds), **summary, "textbook": textbook,
                                           "test_novelty_quantiles": {q: round(float(np.quantile(novelty, q)), 3)
                                                                      for q in (0.5, 0.9, 0.95, 0.99)}},
                                          indent=2) + "\n")
    if args.save:
        card["novelty"] = summary
        fit.model.save(args.save, metadata=card)
    for label, report in (("validation", fit.val), ("test", test), ("test, unseen chemical systems", held_out)):
        if report is None:
            continue
        print(f"{name} {label}: {report.flagged}/{report.n} flagged; MAE flagged {report.mae_flagged:.4f} against "
              f"{report.mae_unflagged:.4f} ({report.error_ratio:.2f}x); Spearman(novelty, |error|) "
              f"{report.spearman_novelty_error:.2f}; 68% coverage flagged {report.coverage_68_flagged}, "
              f"unflagged {report.coverage_68_unflagged}")
    print(f"textbook flagged: {summary['textbook_flagged']}")
    print(f"{seconds:.0f} s; results in {results}" + (f"; saved to {args.save}" if args.save else ""))


if __name__ == "__main__":
    main()
