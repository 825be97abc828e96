"""The main job: train a small CGAT on a slice of the shared PBE formation energies, end to end.

Reads the fixed ``e_form_pbe`` splits, builds graphs with :class:`CGATGraphConverter`, trains with
:func:`matgl_cgat.training.fit` (the ``cpu`` recipe), reports the test MAE against the
predict-the-training-median baseline, saves the model, reloads it with ``matgl.load_model`` and
predicts a few crystals that it builds itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import DataError, default_data_dir, load_dataset, split_from_file
from matgl_cgat.domain import TrainingDomain
from matgl_cgat.models import CGAT
from matgl_cgat.predict import example_structures

TARGET = "e_form_pbe"


@dataclass
class QuickstartResult:
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    test_mae: float
    baseline_mae: float
    train_seconds: float
    model_dir: str
    predictions: dict[str, float]


def run_quickstart(
    data_dir: str | Path | None = None,
    out_dir: str | Path = "cgat_quickstart",
    n_train: int = 2000,
    n_val: int = 250,
    n_test: int = 500,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    preset: str = "small",
    progress: bool = True,
) -> QuickstartResult:
    """Train, evaluate, save, reload and predict; returns the figures (also written to ``result.json``)."""
    import matgl

    from matgl_cgat.training import fit, recipe

    data_dir = Path(data_dir) if data_dir else default_data_dir()
    if data_dir is None or not (Path(data_dir) / "mp_gap.jsonl.gz").is_file():
        raise DataError(
            f"mp_gap data not found (looked in {data_dir or '$MATGL_CGAT_DATA and ../shared/data/mp_gap'}); "
            "pass --data PATH to the folder holding mp_gap.jsonl.gz and splits.json"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    model = CGAT.from_preset(preset)
    # all structures converted once in parallel and cached: a second run starts training at once
    full = load_dataset(data_dir / "mp_gap.jsonl.gz", TARGET, converter=model.graph_converter(),
                        cache_dir=out_dir / "graph_cache", progress=progress)
    parts = split_from_file(full, data_dir / "splits.json", TARGET)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    datasets = {name: parts[name].subset(np.arange(min(n, len(parts[name])) if n > 0 else len(parts[name])))
                for name, n in sizes.items()}
    y_train = np.array(datasets["train"].labels[TARGET])
    model.set_normalization(float(y_train.mean()), float(y_train.std()))

    t0 = time.perf_counter()
    fit(model, datasets["train"], datasets["val"],
        recipe("cpu", epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress),
        out_dir=out_dir / "run", overwrite=True)
    train_seconds = time.perf_counter() - t0

    pred = model.predict_dataset(datasets["test"])
    y_test = datasets["test"].labels[TARGET]
    test_mae = float(np.abs(pred - y_test).mean())
    baseline_mae = float(np.abs(np.median(y_train) - y_test).mean())

    model_dir = out_dir / "model"
    domain = TrainingDomain.from_dataset(datasets["train"], "quickstart training set").to_dict()
    model.save(model_dir, metadata={"property": TARGET, "units": "eV/atom", "functional": "PBE",
                                    "data": str(data_dir), "n_train": len(y_train), "epochs": epochs,
                                    "test_mae": test_mae, "domain": domain})
    reloaded = matgl.load_model(model_dir)
    if not isinstance(reloaded, CGAT):
        raise RuntimeError(f"matgl.load_model returned {type(reloaded).__name__}, expected CGAT")
    predictions = {name: float(reloaded.predict_structure(s)) for name, s in example_structures().items()}
    result = QuickstartResult(len(y_train), len(datasets["val"]), len(y_test), epochs, test_mae, baseline_mae,
                              train_seconds, str(model_dir), predictions)
    atomic_write_text(out_dir / "result.json", json.dumps(result.__dict__, indent=2))
    return result
