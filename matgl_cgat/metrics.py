"""Evaluation metrics beyond the MAE: R², RMSE, metal/non-metal and stability classification.

A single MAE hides what matters for materials screening. Band-gap data sets are dominated by metals
(gap 0), which are easy to predict and flatter the overall MAE; hull-distance models are used to
pick stable candidates, so their classification quality counts more than their regression error.
Every function returns plain Python ``float``/``int`` values, so results can go straight to JSON.
Undefined ratios (no positives, zero variance) are ``nan``, never an exception.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["band_gap_metrics", "metrics_for", "per_output_mae", "regression_metrics", "stability_metrics"]

NAN = float("nan")


def _validate(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as flat float arrays; bad input fails loudly here rather than as a silent ``nan`` metric."""
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({len(t)} vs {len(p)})")
    if t.size == 0:
        raise ValueError("y_true and y_pred are empty; metrics need at least one value")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf); "
                             f"the first is at index {int(np.argmax(bad))}")
    return t, p


def _ratio(num: float, den: float) -> float:
    """``num / den`` as a float, ``nan`` when the denominator is zero (an undefined rate, not an error)."""
    return float(num) / float(den) if den else NAN


def regression_metrics(y_true, y_pred) -> dict:
    """Count, MAE, RMSE, R² and the largest absolute error.

    R² = 1 - SS_res / SS_tot is ``nan`` when the labels are constant (SS_tot = 0), since no model can
    then be compared against the mean predictor. The maximum error exposes outliers the MAE averages away.
    """
    t, p = _validate(y_true, y_pred)
    err = p - t
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    return {
        "n": int(t.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(math.sqrt(ss_res / t.size)),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else NAN,
        "max_error": float(np.max(np.abs(err))),
    }


def _confusion(true_pos: np.ndarray, pred_pos: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) counts of two boolean arrays."""
    tp = int(np.sum(true_pos & pred_pos))
    fp = int(np.sum(~true_pos & pred_pos))
    fn = int(np.sum(true_pos & ~pred_pos))
    tn = int(np.sum(~true_pos & ~pred_pos))
    return tp, fp, fn, tn


def band_gap_metrics(y_true, y_pred, metal_threshold: float = 0.1, insulator_from: float = 0.5) -> dict:
    """Metal/non-metal classification and the MAE split by the label's class.

    Most PBE entries are metals with a gap of exactly 0 eV; a model that predicts ~0 for them earns a
    low overall MAE while saying little about the semiconductors one actually screens for. So the
    MAE is reported separately for non-metals and metals, alongside how well metals are recognised.

    A crystal counts as a metal when its gap is below ``metal_threshold`` (eV). The same threshold is
    applied to the label and to the prediction, so a predicted gap of 0.05 eV is a predicted metal.
    Precision and recall treat "metal" as the positive class; they are ``nan`` when undefined (no
    predicted metals, or no metals in the labels), as are the MAEs of an empty class.

    The two mistakes a user notices are counted apart, as rates of their own class:
    ``insulators_called_metals`` (label at least ``insulator_from``, prediction below
    ``metal_threshold``: Si or SrTiO3 given no gap) and ``metals_given_gap`` (label below
    ``metal_threshold``, prediction at or above it). Crystals with a label between the two thresholds
    are small-gap semiconductors: they count in the accuracy and F1, not in the insulator rate.
    """
    t, p = _validate(y_true, y_pred)
    metal_true = t < metal_threshold
    metal_pred = p < metal_threshold
    tp, fp, fn, tn = _confusion(metal_true, metal_pred)
    abs_err = np.abs(p - t)
    n_metals = int(metal_true.sum())
    n_nonmetals = int(t.size - n_metals)
    insulator = t >= insulator_from
    return {
        "metal_fraction": n_metals / t.size,
        "metal_accuracy": (tp + tn) / t.size,
        "metal_precision": _ratio(tp, tp + fp),
        "metal_recall": _ratio(tp, tp + fn),
        "metal_f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "insulators_called_metals": _ratio(int(np.sum(insulator & metal_pred)), int(insulator.sum())),
        "n_insulators": int(insulator.sum()),
        "metals_given_gap": _ratio(fn, n_metals),
        "mae_nonmetals": float(abs_err[~metal_true].mean()) if n_nonmetals else NAN,
        "n_nonmetals": n_nonmetals,
        "mae_metals": float(abs_err[metal_true].mean()) if n_metals else NAN,
        "n_metals": n_metals,
    }


def stability_metrics(y_true, y_pred, threshold: float = 0.0) -> dict:
    """Classification of thermodynamic stability from energies above the convex hull (eV/atom).

    A structure counts as stable when its hull distance is <= ``threshold``, for the label and the
    prediction alike; "stable" is the positive class, because screening keeps the predicted-stable
    candidates, so precision is the hit rate of a discovery campaign and recall the share of stable
    materials it finds. F1 = 2 tp / (2 tp + fp + fn) is ``nan`` only when neither the labels nor the
    predictions contain a stable structure; precision and recall are ``nan`` when their denominator is zero.
    """
    t, p = _validate(y_true, y_pred)
    stable_true = t <= threshold
    stable_pred = p <= threshold
    tp, fp, fn, tn = _confusion(stable_true, stable_pred)
    return {
        "stable_fraction": int(stable_true.sum()) / t.size,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": (tp + tn) / t.size,
        "n_stable": int(stable_true.sum()),
        "n_predicted_stable": int(stable_pred.sum()),
    }


def per_output_mae(y_pred, labels, floors=None) -> dict[str, dict]:
    """The MAE of each output of a several-output model on the rows where that output has a label.

    Multi-fidelity and multi-task test sets are sparse: a crystal has a PBE gap but rarely an HSE one,
    and a missing label is stored as NaN. ``labels`` maps each output's name to its label column, in
    the model's output order (column ``j`` of ``y_pred`` is the ``j``-th name); ``floors`` optionally
    bounds an output's predictions from below before scoring (0 for gaps and hull distances trained
    without the bound). Returns ``{name: {"n": labelled rows, "mae": MAE}}``; an output with no label
    in this set gets ``n = 0`` and a ``nan`` MAE, so one empty fidelity does not hide the others.
    """
    pred = np.asarray(y_pred, dtype=float)
    pred = pred.reshape(len(pred), -1)
    if pred.shape[1] != len(labels):
        raise ValueError(f"y_pred has {pred.shape[1]} output(s) but {len(labels)} label column(s) were given "
                         f"({', '.join(labels)})")
    out = {}
    for j, (name, column) in enumerate(labels.items()):
        y = np.asarray(column, dtype=float).ravel()
        if len(y) != len(pred):
            raise ValueError(f"labels of {name!r} have {len(y)} rows, y_pred has {len(pred)}")
        have = np.isfinite(y)
        p = pred[have, j]
        if floors and name in floors:
            p = np.maximum(p, floors[name])
        if have.any() and not np.isfinite(p).all():
            raise ValueError(f"y_pred of {name!r} has non-finite value(s) on labelled rows")
        out[name] = {"n": int(have.sum()), "mae": float(np.abs(p - y[have]).mean()) if have.any() else NAN}
    return out


def metrics_for(target: str, y_true, y_pred, **kw) -> dict:
    """Regression metrics plus the classification metrics that suit ``target``, in one flat dict.

    Targets whose name contains ``"gap"`` get :func:`band_gap_metrics`, those containing ``"hull"`` get
    :func:`stability_metrics` (case-insensitive); ``kw`` (``metal_threshold`` / ``threshold``) is passed
    on to that function. Other targets get regression metrics only and accept no keyword arguments, so
    a misspelt or misplaced threshold is reported instead of silently ignored.
    """
    out = regression_metrics(y_true, y_pred)
    name = target.lower()
    if "gap" in name:
        out.update(band_gap_metrics(y_true, y_pred, **kw))
    elif "hull" in name:
        out.update(stability_metrics(y_true, y_pred, **kw))
    elif kw:
        raise TypeError(f"target {target!r} takes no extra metric arguments, got {sorted(kw)}")
    return out
