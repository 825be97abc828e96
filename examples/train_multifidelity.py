"""Train a joint multi-fidelity band-gap CGAT on the shared data: PBE, HSE, GLLB-SC and SCAN gaps at once.

This is how ``CGAT-MultiFidelity-BandGap`` is made. The functional is an input: one network, one
output per fidelity from the shared representation re-weighted by that fidelity's learned scale and
shift (:class:`matgl_cgat.layers.FidelityFiLM`). It starts from a single-fidelity parent (by default
``CGAT-PBE-BandGap``: every fidelity begins as its PBE prediction in that fidelity's units) and
trains on every fidelity's labels together, missing labels masked.

    python examples/train_multifidelity.py --epochs 6 --run runs/mf-stage1 --save runs/models/CGAT-MultiFidelity-BandGap

Splits: the shared ``splits.json`` draws one split per fidelity, so a crystal can be in the PBE
training split and the HSE test split. Each label is used only where its own fidelity's split puts
it: training labels for training, and each fidelity is tested on its own fixed test split, the same
split the sequential-transfer models are tested on. ``--without scan`` leaves a fidelity out (to add
it later with ``add_fidelity`` and measure forgetting). Resumable like every run of the training core.

Because the splits are drawn per fidelity, most HSE, GLLB-SC and SCAN test crystals have their PBE
gap among the PBE training labels, which the parent and this model both fit. The card therefore
also holds each higher fidelity's test MAE split by that overlap: the part whose PBE gap was never
a training label is the figure to expect for a new crystal. ``--rescore FOLDER`` writes that split
into the card of a model trained before it existed, without training:

    python examples/train_multifidelity.py --rescore matgl_cgat/pretrained/CGAT-MultiFidelity-BandGap
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
from matgl_cgat.data import default_data_dir, load_dataset, load_splits, split_per_target
from matgl_cgat.metrics import per_output_mae
from matgl_cgat.transfer import multi_fidelity_from
from matgl_cgat.workflows import training_history

#: fidelity name -> label column of the shared data
FIDELITIES = {"pbe": "gap_pbe", "hse": "gap_hse", "gllbsc": "gap_gllbsc", "scan": "gap_scan"}


def test_mae_by_pbe_overlap(pred: np.ndarray, test, fidelities: dict, pbe_train_ids: set) -> dict:
    """Each higher fidelity's test MAE on the crystals whose PBE gap is a training label and on the rest.

    ``pred`` has one column per fidelity, in the order of ``fidelities`` (name -> label column).
    """
    seen = np.array([i in pbe_train_ids for i in test.ids])
    split = {}
    for j, (name, column) in enumerate(fidelities.items()):
        if name == "pbe":
            continue
        y = np.asarray(test.labels[column], dtype=float)
        split[name] = {key: per_output_mae(pred[:, j], {name: np.where(mask, y, np.nan)})[name]
                       for key, mask in (("pbe_gap_in_training", seen), ("pbe_gap_not_in_training", ~seen))}
    return split


def score_on_test(model, test, fidelities: dict, pbe_train_ids: set) -> tuple[dict, dict]:
    """Each fidelity's test MAE and each higher fidelity's split by PBE-training overlap (one prediction pass)."""
    pred = model.predict_dataset(test).reshape(len(test), -1)
    test_mae = per_output_mae(pred, {f: test.labels[c] for f, c in fidelities.items()})
    return test_mae, test_mae_by_pbe_overlap(pred, test, fidelities, pbe_train_ids)


def describe_parent(name: str, card) -> str:
    """The parent's name with its stage and test MAE.

    A shipped name is re-trained over time (``CGAT-PBE-BandGap`` has had several stages), so the name
    alone does not say which weights a model started from.
    """
    card = card if isinstance(card, dict) else {}
    stages, mae = card.get("stages") or [], card.get("test_mae")
    bits = [f"stage {len(stages)}"] if stages else []
    if isinstance(mae, (int, float)):
        bits.append(f"test MAE {mae:.3f} {card.get('units', '')}".rstrip())
    return f"{name} ({', '.join(bits)})" if bits else name


def rescore(folder: Path, data_dir: Path, cache: Path) -> None:
    """Re-score a saved multi-fidelity model on its test splits and add the overlap split to its card."""
    model = matgl.load_model(folder)
    fidelities = {f: model.metadata["label_columns"][f] for f in model.fidelities}  # the model's output order
    columns = list(fidelities.values())
    ds = load_dataset(data_dir / "mp_gap.jsonl.gz", columns, require="any", cache_dir=cache).with_targets(columns)
    test = split_per_target(ds, data_dir / "splits.json", columns).test
    test_mae, by_overlap = score_on_test(model, test, fidelities,
                                         set(load_splits(data_dir / "splits.json", "gap_pbe")["train"]))
    stored_card = model.metadata.get("test_mae") or {}
    for name, figures in test_mae.items():
        stored = (stored_card.get(name) or {}).get("mae", float("nan"))
        if np.isfinite(figures["mae"]) and np.isfinite(stored) and not np.isclose(figures["mae"], stored, rtol=0, atol=1e-3):
            raise SystemExit(f"{folder}: {name} test MAE {figures['mae']:.4f} eV, but the card says {stored:.4f}: "
                             "not the data or model the card describes")
    model.metadata["test_mae_split_by_pbe_training_overlap"] = by_overlap
    model.save(folder)
    print(json.dumps(model.metadata["test_mae_split_by_pbe_training_overlap"], indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="CGAT-MultiFidelity-BandGap")
    parser.add_argument("--data", type=Path, default=None, help="folder with mp_gap.jsonl.gz and splits.json")
    parser.add_argument("--parent", default="CGAT-PBE-BandGap", help="single-fidelity start (name or folder), "
                        "or a multi-fidelity model to continue")
    parser.add_argument("--without", nargs="*", default=[], choices=sorted(FIDELITIES), help="fidelities left out")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of the triangular cycle")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="32-true", help="32-true or bf16-mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", type=Path, default=None, help="run folder (default runs/<name>)")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--save", type=Path, default=None, help="model folder (default runs/models/<name>)")
    parser.add_argument("--rescore", type=Path, default=None, metavar="FOLDER",
                        help="only re-score this saved model and add the PBE-overlap split to its card")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = args.data or default_data_dir()
    if data_dir is None:
        raise SystemExit("mp_gap data not found: pass --data PATH")
    if args.rescore:
        rescore(args.rescore, Path(data_dir), args.graph_cache)
        return
    fidelities = {f: c for f, c in FIDELITIES.items() if f not in args.without}
    columns = list(fidelities.values())

    ds = load_dataset(Path(data_dir) / "mp_gap.jsonl.gz", columns, require="any", cache_dir=args.graph_cache)
    ds = ds.with_targets(columns)
    parts = split_per_target(ds, Path(data_dir) / "splits.json", columns)
    pbe_train_ids = set(load_splits(Path(data_dir) / "splits.json", "gap_pbe")["train"])  # read before training
    counts = {p: {f: int(np.isfinite(parts[p].labels[c]).sum()) for f, c in fidelities.items()}
              for p in ("train", "val", "test")}
    print({p: (len(parts[p]), counts[p]) for p in counts})

    parent = matgl.load_model(args.parent)
    if getattr(parent, "fidelities", None):
        if list(parent.fidelities) != list(fidelities):
            raise SystemExit(f"{args.parent} has fidelities {list(parent.fidelities)}, not {list(fidelities)}")
        model, renormalize = parent, False
    else:
        y = parts["train"].labels
        model = multi_fidelity_from(parent, {f: (float(np.nanmean(y[c])), float(np.nanstd(y[c])))
                                             for f, c in fidelities.items()}, label_columns=fidelities)
        renormalize = False  # set per fidelity above
    t0, cpu0 = time.time(), time.process_time()
    trained = model.finetune(parts["train"], parts["val"], policy="full", renormalize=renormalize, output_min=0.0,
                             epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                             precision=args.precision, out_dir=args.run or Path("runs") / args.name)
    if not trained.fit_result.is_global_zero:
        return
    test_mae, by_overlap = score_on_test(trained, parts["test"], fidelities, pbe_train_ids)
    record, domain = trained.metadata["finetune"], trained.metadata.get("domain")
    start = "all weights" if model is parent else "every fidelity starting as its PBE prediction"
    history = training_history(parent.metadata, args.name, {
        "what": f"from {describe_parent(args.parent, parent.metadata)} ({start}): one {args.epochs}-epoch cycle peaking at {args.lr:g} on "
                f"{', '.join(fidelities)} together ({args.precision}); best epoch {record['best_epoch']}",
        "test_mae": test_mae, "cpu_hours_measured": round((time.process_time() - cpu0) / 3600, 2)})
    trained.metadata = {
        "name": args.name,
        "property": "band gap",
        "units": "eV",
        "fidelities": list(fidelities),
        "label_columns": fidelities,
        "functional": "one output per fidelity: " + ", ".join(fidelities),
        "data": "mp_gap (Materials Project; gaps of Chen et al. 2021), see shared/data/mp_gap/README.md",
        "split": "splits.json, each fidelity's own split: " + json.dumps(counts),
        "parent": args.parent,
        "parent_at_training": describe_parent(args.parent, parent.metadata),
        "preset": (parent.metadata or {}).get("preset") if isinstance(parent.metadata, dict) else None,
        "policy": "full",
        "output_min": trained.output_min,
        "training": {k: record[k] for k in ("epochs", "lr", "period", "loss", "best_epoch", "best_val_mae",
                                            "seed", "stopped_at_epoch") if k in record},
        "test_mae": test_mae,
        "test_mae_split_by_pbe_training_overlap": by_overlap,
        "train_seconds_this_invocation": round(time.time() - t0),
        "command": "python examples/train_multifidelity.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "domain": domain,
        **history,
    }
    save = args.save or Path("runs/models") / args.name
    trained.save(save)
    print(f"{args.name}: test MAE " + ", ".join(f"{f} {v['mae']:.3f} eV (n={v['n']})" for f, v in test_mae.items())
          + f"; saved to {save}")


if __name__ == "__main__":
    main()
