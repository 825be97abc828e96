"""Does weight averaging help the hull model? The last N epochs' weights of its stage-2 run, averaged.

``finetune(average_last=N)`` (``--average-last N``) averages the last N epochs' weights inside a run.
The stage-2 run of the shipped ``CGAT-PBE-Ehull`` started before that option existed, so its
end-of-epoch ``last.ckpt`` files were copied as it went; this script does the same averaging from
those copies, picks N on the validation split only (MAE after the output bound and the
validation-fitted offset), then scores the chosen average once on the test split and saves it.

    python benchmarks/ehull_weight_average.py --base runs/models/CGAT-PBE-Ehull \
        --ckpts runs/ehull_stage2_snapshots/*.ckpt --save runs/models/CGAT-PBE-Ehull-avg

Writes ``benchmarks/ehull_weight_average.json`` (validation MAE for every N, the choice, test MAE).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

import matgl_cgat  # noqa: F401  (registers CGAT with matgl.load_model)
from matgl_cgat.data import default_data_dir, load_dataset, split_from_file
from matgl_cgat.models import CGAT
from matgl_cgat.transfer import best_output_shift, calibrate_offset

TARGET = "e_hull_pbe"


def epoch_weights(paths: list[Path]) -> dict[int, dict[str, torch.Tensor]]:
    """End-of-epoch model weights by epoch, from Lightning checkpoints (one per epoch expected)."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for path in paths:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        epoch = int(ckpt["epoch"])
        if epoch in out:
            raise SystemExit(f"{path}: a second checkpoint for epoch {epoch}")
        out[epoch] = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return dict(sorted(out.items()))


def average(weights: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of the floating-point tensors (the mean ``finetune(average_last=...)`` keeps as it goes)."""
    return {k: torch.stack([w[k].float() for w in weights]).mean(0) for k in weights[0] if weights[0][k].is_floating_point()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the run's saved model (architecture and card)")
    parser.add_argument("--ckpts", type=Path, nargs="+", required=True, help="end-of-epoch last.ckpt copies")
    parser.add_argument("--data", type=Path, default=None, help="folder with mp_gap.jsonl.gz and splits.json")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--last", type=int, nargs="+", default=[2, 3, 4, 5, 6, 8, 10], help="candidate N")
    parser.add_argument("--save", type=Path, required=True)
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("ehull_weight_average.json"))
    args = parser.parse_args()
    data_dir = args.data or default_data_dir()
    if data_dir is None:
        raise SystemExit("mp_gap data not found: pass --data PATH")
    ds = load_dataset(Path(data_dir) / "mp_gap.jsonl.gz", TARGET, cache_dir=args.graph_cache, progress=False)
    parts = split_from_file(ds, Path(data_dir) / "splits.json", TARGET)
    y_val, y_test = parts["val"].labels[TARGET], parts["test"].labels[TARGET]

    base = CGAT.load(args.base)
    by_epoch = epoch_weights(args.ckpts)
    epochs = list(by_epoch)
    if epochs != list(range(epochs[0], epochs[0] + len(epochs))):
        raise SystemExit(f"checkpoints are not consecutive epochs: {epochs}")

    def averaged_model(n: int) -> CGAT:
        """The base model with the mean of the last ``n`` epochs' weights, unbounded and without the offset
        (the checkpoints carry the training mean/std)."""
        model = copy.deepcopy(base)
        model.load_state_dict({**model.state_dict(), **average([by_epoch[e] for e in epochs[-n:]])})
        model.set_output_min(None)
        return model

    candidates = {}
    for n in sorted(set(args.last)):
        if n > len(epochs):
            continue
        model = averaged_model(n)
        pred = model.predict_dataset(parts["val"])
        shift, calibrated, _ = best_output_shift(pred, y_val, floor=0.0)
        candidates[n] = {"epochs": epochs[-n:], "val_mae_raw": float(np.abs(pred - y_val).mean()),
                         "val_mae_calibrated": calibrated, "shift": shift}
        print(n, candidates[n])
    best_n = min(candidates, key=lambda n: candidates[n]["val_mae_calibrated"])

    model = averaged_model(best_n)
    model.set_output_min(0.0)
    calibration = calibrate_offset(model, parts["val"])
    pred = model.predict_dataset(parts["test"])
    test_mae = float(np.abs(pred - y_test).mean())
    card = dict(base.metadata)
    card["training"] = {**card.get("training", {}),
                        "weight_average": {"epochs": epochs[-best_n:], "val_mae": candidates[best_n]["val_mae_raw"]}}
    card["offset_calibration"] = {**calibration, "on": "validation split"}
    card["test_mae"] = test_mae
    model.metadata = card
    model.save(args.save)
    result = {"candidates": candidates, "chosen_last": best_n, "chosen_by": "validation MAE after bound and offset",
              "calibration": calibration, "test_mae": test_mae}
    fd, tmp = tempfile.mkstemp(dir=args.results.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.results)
    print(f"chose the last {best_n} epochs; test MAE {test_mae:.4f}; saved to {args.save}")


if __name__ == "__main__":
    main()
