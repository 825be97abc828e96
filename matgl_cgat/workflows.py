"""Train / fine-tune / evaluate and leave files a user can open: what ``mgl-cgat train|finetune|evaluate`` run.

Each run folder gets the saved model (``model/``, loadable with ``matgl.load_model``, its model card
in the metadata), the per-epoch log (``run/metrics.csv``), ``test_metrics.json``,
``test_predictions.csv`` and two PNGs: the training curve (with the cyclic learning rate) and the
test parity plot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from matgl_cgat._io import atomic_write_text
from matgl_cgat.metrics import metrics_for


def write_predictions(path: str | Path, dataset, y_true, y_pred) -> None:
    """``id,y_true,y_pred`` per structure, in dataset order (ids are positions when the dataset has none)."""
    ids = list(getattr(dataset, "ids", None) or range(len(dataset)))
    rows = "".join(f"{i},{a:.6g},{b:.6g}\n" for i, a, b in zip(ids, y_true, y_pred))
    atomic_write_text(path, "id,y_true,y_pred\n" + rows)


def output_column(model, target: str) -> int:
    """The output of a several-output model (multi-fidelity or multi-target) that predicts ``target``.

    Found by the card's label columns (``{"hse": "gap_hse", ...}``) or fidelity names for a
    multi-fidelity model, by its list of properties for a multi-target one; an error naming the
    outputs when none matches, since scoring the wrong column would give plausible, wrong metrics.
    """
    card = model.metadata if isinstance(getattr(model, "metadata", None), dict) else {}
    fidelities = list(getattr(model, "fidelities", None) or ())
    if fidelities:
        columns = [(card.get("label_columns") or {}).get(f, f) for f in fidelities]
        for names in (columns, [f.lower() for f in fidelities]):
            if str(target).lower() in [n.lower() for n in names]:
                return [n.lower() for n in names].index(str(target).lower())
        outputs = [f"{f} ({c})" for f, c in zip(fidelities, columns)]
    else:
        prop = card.get("property")
        names = list(prop) if isinstance(prop, (list, tuple)) else []
        if target in names:
            return names.index(target)
        outputs = names or [f"{getattr(model, 'ntargets', '?')} unnamed outputs"]
    raise ValueError(f"{card.get('name') or type(model).__name__} has several outputs ({', '.join(outputs)}); "
                     f"none of them is {target!r}")


def _stage_cpu_hours(stage: dict) -> float:
    """A recorded stage's CPU time: measured where the card has it, else 2 threads x its wall time."""
    if stage.get("cpu_hours_measured") is not None:
        return float(stage["cpu_hours_measured"])
    if stage.get("train_seconds") is not None:
        return 2 * float(stage["train_seconds"]) / 3600
    if stage.get("wall_minutes_2_threads") is not None:
        return 2 * float(stage["wall_minutes_2_threads"]) / 60
    return 0.0


def training_history(parent_card: dict | None, name: str, stage: dict) -> dict:
    """The ``stages`` and ``cpu_hours`` of a model card after one more stage of training.

    Shipped models are trained in stretches: each session warm-restarts from the last committed
    weights. The card must still say what the whole model cost and how its error fell, so a warm
    restart (the parent card has the model's own ``name``) continues the parent's history: its
    ``stages`` (or, on a card from before stages were recorded, one stage rebuilt from its training
    record and wall time) and then ``stage``, numbered next. A model trained from scratch or from
    another model starts its own history with ``stage`` alone; what another parent cost is kept
    apart as ``parent_cpu_hours`` (when its card says), so ``cpu_hours`` stays this model's own.
    ``cpu_hours`` is the parent's total, or the sum over its stages, plus this stage's. A stage
    without ``cpu_hours_measured`` is counted as 2 threads x its wall time (this workplace's cores).
    The scripts measure the process CPU time of the invocation: of rank 0 only with several
    processes, and of the resumed part only when a run was interrupted.
    """
    parent_card = parent_card if isinstance(parent_card, dict) else {}
    warm_restart = parent_card.get("name") == name
    stages = [dict(s) for s in parent_card.get("stages") or []]
    if warm_restart and not stages:
        stages = [{"what": "as recorded by the card's training settings", "training": parent_card.get("training"),
                   "test_mae": parent_card.get("test_mae"),
                   "train_seconds": parent_card.get("train_seconds_this_invocation")}]
    parent_hours = parent_card.get("cpu_hours")
    if parent_hours is None and stages:
        parent_hours = sum(_stage_cpu_hours(s) for s in stages)
    if not warm_restart:
        own = {"stages": [{"stage": 1, **stage}], "cpu_hours": round(_stage_cpu_hours(stage), 2)}
        return own if parent_hours is None else {**own, "parent_cpu_hours": round(float(parent_hours), 2)}
    for i, s in enumerate(stages, 1):
        s.setdefault("stage", i)
    stages.append({"stage": len(stages) + 1, **stage})
    return {"stages": stages, "cpu_hours": round(float(parent_hours) + _stage_cpu_hours(stage), 2)}


def evaluate(model, dataset, target: str, out: str | Path | None = None, title: str | None = None,
             units: str = "", batch_size: int = 128) -> dict:
    """Metrics of ``model`` on a labelled dataset; with ``out``, also predictions CSV, metrics JSON, parity PNG.

    A several-output model is scored on the output that predicts ``target`` (:func:`output_column`).
    """
    card = getattr(model, "metadata", None)
    if isinstance(card, dict) and "anchor" in card:  # its output alone is a residual: scoring it would mislead
        raise ValueError(f"{card.get('name', 'this model')} predicts the residual to {card['anchor'].get('potential')}; "
                         "score it with matgl_cgat.potentials.anchored_predictions (mgl-cgat predict --labels)")
    if dataset is None or len(dataset) == 0:
        raise ValueError(f"evaluate: no structures to evaluate {target!r} on (the dataset is empty)")
    y = np.asarray(dataset.labels[target], dtype=float)
    pred = np.asarray(model.predict_dataset(dataset, batch_size=batch_size), dtype=float)
    if pred.ndim == 2:
        pred = pred[:, output_column(model, target)] if pred.shape[1] > 1 else pred[:, 0]
    metrics = metrics_for(target, y, pred)
    if out is not None:
        out = Path(out)
        write_predictions(out / "test_predictions.csv", dataset, y, pred)
        atomic_write_text(out / "test_metrics.json", json.dumps({"target": target, **metrics}, indent=2))
        from matgl_cgat.plots import plot_parity

        plot_parity(y, pred, out / "parity.png", title=title or target, units=units)
    return metrics


def train(model, parts, target: str, out: str | Path, *, policy: str = "full", renormalize: bool = True,
          config=None, output_min: float | None | str = "auto", calibrate: bool = False, card: dict | None = None,
          overwrite: bool = False):
    """Fine-tune ``model`` (or train a fresh one) on ``parts.train``, test on ``parts.test``, save all.

    ``parts`` is a :class:`matgl_cgat.data.Splits` (``prepare_splits``, ``split_from_file``) or a
    mapping with ``train``, ``test`` and optionally ``val``.

    Training goes through :func:`matgl_cgat.transfer.finetune` and so :func:`matgl_cgat.training.fit`
    with ``config`` (a :class:`~matgl_cgat.training.TrainConfig`; default: the ``cpu`` recipe). Returns
    the trained model and its test metrics. Resumes an interrupted run in the same ``out``. With
    ``calibrate`` the output is shifted by the constant that minimises the validation MAE
    (:func:`matgl_cgat.transfer.calibrate_offset`) before testing. With several processes only rank 0
    writes files.
    """
    from matgl_cgat.data import Splits
    from matgl_cgat.data._prepare import check_parts
    from matgl_cgat.training import recipe
    from matgl_cgat.transfer import finetune

    parts = Splits.of(parts)
    # test (and val, when there is one) must hold structures: found out now, not after training
    if parts.test is None:
        raise ValueError("train: no test split (parts.test is None)")
    check_parts(parts, ("train", "val", "test"), f"{parts.source or 'train'}: {target!r}, {parts.split or 'given splits'}")
    out = Path(out)
    config = config or recipe("cpu")
    if calibrate and parts.val is None:
        raise ValueError("calibrate needs a validation split")
    if getattr(model, "fidelities", None) or getattr(model, "ntargets", 1) > 1:  # found out now, not after training
        output_column(model, target)
        if calibrate:
            raise ValueError("calibrate (a validation-fitted output shift) handles one-output models only")
    t0 = time.time()
    trained = finetune(model, parts.train, parts.val, policy=policy, renormalize=renormalize,
                       output_min=output_min, config=config, out_dir=out / "run", overwrite=overwrite)
    seconds = time.time() - t0
    calibration = None
    if calibrate:
        from matgl_cgat.transfer import calibrate_offset

        calibration = {**calibrate_offset(trained, parts.val), "on": "validation split"}
    units = (card or {}).get("units", "")
    if not trained.fit_result.is_global_zero:
        return trained, None
    metrics = evaluate(trained, parts.test, target, out, units=units)
    record = trained.metadata["finetune"]
    y_train = np.asarray(parts.train.labels[target], dtype=float)
    # a multi-fidelity model keeps its fidelities' names and label columns, and predicts what it predicted
    carried = {k: trained.metadata[k] for k in ("fidelities", "label_columns") if k in trained.metadata}
    source_card = model.metadata if isinstance(getattr(model, "metadata", None), dict) else {}
    trained.metadata = {
        **(card or {}),
        **carried,
        "property": (source_card.get("property") or list((carried.get("label_columns") or {}).values()) or target)
        if carried else target,
        **({"trained_label": target} if carried else {}),
        "split": parts.split,
        "data": parts.source,
        "policy": policy,
        "output_min": record["output_min"],
        "offset_calibration": calibration,
        "training": {**{k: record[k] for k in ("best_epoch", "best_val_mae", "weight_average", "renormalize",
                                               "trainable_parameters", "frozen_parameters") if k in record},
                     **record["training"]["config"]},
        "n_train": len(parts.train),
        "test_mae": metrics["mae"],
        "test_metrics": metrics,
        "test_mae_predicting_train_median": float(np.abs(np.median(y_train) - parts.test.labels[target]).mean()),
        "train_seconds_this_invocation": round(seconds),
        "domain": trained.metadata.get("domain"),
    }
    trained.save(out / "model")
    from matgl_cgat.plots import plot_training_curve

    plot_training_curve(out / "run" / "metrics.csv", out / "training_curve.png", title=f"{target}: {policy}")
    return trained, metrics
