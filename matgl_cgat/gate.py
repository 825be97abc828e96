"""An explicit metal-or-not decision for band-gap models.

Most band-gap training sets are dominated by metals at exactly 0 eV. A regression trained on them
with an MAE learns to hedge towards 0, and a mean-absolute loss rewards it: the shipped gap models
gave Si 0.003 eV and SrTiO3 0.05 eV. A user screening for semiconductors needs the opposite
priority: first *whether* a crystal has a gap, then how large it is. So a gap model here can carry a
**metal gate**: a small MLP on the pooled crystal representation (the same input as the uncertainty
head) that outputs a metal-versus-non-metal logit per output. Where the logit is above the model's
threshold the answer is 0 eV; elsewhere it is the regression's.

The gate is fitted like the uncertainty head, on the frozen network, by binary cross-entropy against
the training labels (a label below ``metal_below``, 0.1 eV, is a metal), with early stopping on the
validation loss. The threshold is then chosen on the validation set, where the decision matters: it
minimises the sum of the two error rates a user notices, insulators called metals and metals given a
gap (:func:`matgl_cgat.metrics.band_gap_metrics`), with the regression's own answers for the crystals
the gate lets through. The test split is untouched by both steps.

Whether the regression itself should be re-trained on non-metals alone first (a "hurdle" model: the
gate says whether, a regression that never saw a 0 eV label says how much) is a question of
measurement; ``examples/gate_gap_models.py`` fits both and keeps the one better on validation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from matgl_cgat.metrics import band_gap_metrics
from matgl_cgat.uncertainty import checked_head_data, embed, fit_head_full_batch, label_columns

#: A label below this (eV) is a metal: the same line the metrics use for a "called metal" prediction.
METAL_BELOW = 0.1


@dataclass
class GateFit:
    """The model with its fitted gate, the chosen threshold and the validation figures behind it."""

    model: torch.nn.Module
    threshold: float  # logit threshold
    val_before: dict  # band_gap_metrics of the ungated model on validation (first output with labels)
    val_after: dict  # the same with the gate
    n_train: int
    n_train_metals: int


def _bce(logits: torch.Tensor, metal: torch.Tensor, present: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the present labels, metals weighted by ``pos_weight`` (balanced classes)."""
    weight = torch.where(metal > 0.5, pos_weight, torch.ones_like(metal))
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[present], metal[present], weight=weight[present])


def _balanced_errors(y: np.ndarray, pred: np.ndarray, metal_below: float) -> float:
    m = band_gap_metrics(y, pred, metal_threshold=metal_below)
    rates = [r for r in (m["insulators_called_metals"], m["metals_given_gap"]) if np.isfinite(r)]
    return float(sum(rates))


def choose_threshold(logits: np.ndarray, regression: np.ndarray, labels: np.ndarray,
                     metal_below: float = METAL_BELOW, floor: float = 0.0) -> float:
    """The logit threshold whose gated answers have the fewest errors on these (validation) crystals.

    The score is insulators called metals plus metals given a gap, each as a rate of its class; ties
    go to the lower validation MAE. Candidates are the midpoints between sorted logits.
    """
    logits, regression, labels = (np.asarray(a, dtype=float).ravel() for a in (logits, regression, labels))
    keep = np.isfinite(labels)
    logits, regression, labels = logits[keep], regression[keep], labels[keep]
    if labels.size < 2:
        raise ValueError("choosing the gate's threshold needs at least 2 validation labels")
    order = np.unique(logits)
    candidates = np.concatenate([[order[0] - 1.0], (order[:-1] + order[1:]) / 2, [order[-1] + 1.0]])
    if candidates.size > 400:  # quantiles are enough to place a threshold on a few thousand crystals
        candidates = np.unique(np.quantile(candidates, np.linspace(0, 1, 401)))
    best = None
    for t in candidates:
        gated = np.where(logits > t, floor, regression)
        key = (round(_balanced_errors(labels, gated, metal_below), 12), float(np.abs(gated - labels).mean()))
        if best is None or key < best[0]:
            best = (key, float(t))
    return best[1]


def fit_metal_gate(model, train, val, *, target=None, hidden: int = 32, epochs: int = 400, lr: float = 3e-3,
                   weight_decay: float = 1e-4, max_train: int | None = 12000, seed: int = 0,
                   metal_below: float = METAL_BELOW, batch_size: int = 128) -> GateFit:
    """Fit a metal gate to a copy of a trained gap CGAT; the network and its regression are unchanged.

    Works for one output or a multi-fidelity model (one logit per fidelity; missing labels ignored).
    The uncertainty head, if any, is kept but was fitted to ungated answers: refit it afterwards
    (:func:`matgl_cgat.uncertainty.fit_sigma_head` sees the gated answers).

    Args:
        train: labelled structures the gate learns from (a seeded subset of ``max_train``).
        val: held-out structures for early stopping and for choosing the threshold.
        target: the label column(s) the gate learns metals from, one per output (default: see
            :func:`~matgl_cgat.uncertainty.label_columns`). A model of measured gaps, whose own data
            holds no metals, is gated with a DFT column that does (``examples/gate_gap_models.py
            --gate-labels gap_hse``).
    """
    train = checked_head_data(train, val, max_train, seed, "fitting a metal gate")
    tuned = copy.deepcopy(model)
    tuned.set_metal_gate(None)  # features and regression without any previous gate
    columns = label_columns(tuned, target)
    f_tr, _, y_tr = embed(tuned, train, columns, batch_size)
    f_va, p_va, y_va = embed(tuned, val, columns, batch_size)
    present_tr, present_va = torch.isfinite(y_tr), torch.isfinite(y_va)
    metal_tr = (torch.nan_to_num(y_tr, nan=1.0) < metal_below).float()
    metal_va = (torch.nan_to_num(y_va, nan=1.0) < metal_below).float()
    n_metals = int(metal_tr[present_tr].sum())
    n_labels = int(present_tr.sum())
    if n_metals == 0 or n_metals == n_labels:
        raise ValueError(f"the gate's training labels hold {n_metals} metal(s) (gap below {metal_below}) among "
                         f"{n_labels}: it needs both classes (gate a measured-gap model with a DFT column that has metals)")
    # balance the classes in the loss: the threshold, not the prior, decides where the line falls
    pos_weight = torch.tensor((n_labels - n_metals) / n_metals)

    torch.manual_seed(seed)
    tuned.set_metal_gate(hidden)
    head = tuned.metal_head
    fit_head_full_batch(head, lambda: _bce(tuned.metal_logit(f_tr), metal_tr, present_tr, pos_weight),
                        lambda: _bce(tuned.metal_logit(f_va), metal_va, present_va, pos_weight),
                        epochs=epochs, lr=lr, weight_decay=weight_decay)

    threshold, before, after = _place_threshold(tuned, f_va, p_va, y_va, metal_below)
    return GateFit(tuned, threshold, before, after, n_labels, n_metals)


def _place_threshold(model, features: torch.Tensor, regression: torch.Tensor, labels: torch.Tensor,
                     metal_below: float) -> tuple[float, dict, dict]:
    """Set the gate's threshold from validation features, ungated answers and labels (one threshold for
    every output: their labels are pooled); returns it with the ungated and gated validation metrics of
    the output with the most labels."""
    logits, p_np, y_np = _as_arrays(model, features, regression, labels)
    floor = float(model.output_min or 0.0)
    threshold = choose_threshold(logits.ravel(), p_np.ravel(), y_np.ravel(), metal_below, floor)
    model.set_metal_threshold(threshold)
    model.metal_below = metal_below
    model._init_args["metal_below"] = metal_below
    model.eval()
    _, y, p, z = _most_labelled_output(logits, p_np, y_np)
    gated = np.where(z > threshold, floor, p)
    return threshold, band_gap_metrics(y, p, metal_below), band_gap_metrics(y, gated, metal_below)


def _as_arrays(model, features, regression, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gate logits, ungated answers, labels) as (N, T) numpy arrays."""
    with torch.no_grad():
        logits = model.metal_logit(features).float().numpy()
    return logits, regression.numpy(), labels.numpy()


def _most_labelled_output(logits, regression, labels) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The output with the most labels, and its labels, answers and logits where it has a label."""
    j = int(np.argmax(np.isfinite(labels).sum(0)))
    have = np.isfinite(labels[:, j])
    return j, labels[have, j], regression[have, j], logits[have, j]


def _embed_ungated(model, dataset, columns: list[str], batch_size: int):
    """``embed`` with the regression's own (ungated) answers; the features do not depend on the gate."""
    head, model.metal_head = model.metal_head, None
    try:
        return embed(model, dataset, columns, batch_size)
    finally:
        model.metal_head = head


def choose_gate_threshold(model, val, *, target=None, metal_below: float = METAL_BELOW,
                          batch_size: int = 128) -> GateFit:
    """Place the threshold of a gate trained with its network (``TrainConfig.metal_weight > 0``) on
    validation crystals, as :func:`fit_metal_gate` does for a gate fitted afterwards; the model is
    changed in place (only its threshold) and returned in the :class:`GateFit`."""
    if getattr(model, "metal_head", None) is None:
        raise ValueError("choosing a gate threshold needs a model with a metal gate (metal_head is None)")
    columns = label_columns(model, target)
    f_va, p_va, y_va = _embed_ungated(model, val, columns, batch_size)
    if int(torch.isfinite(y_va).sum()) < 2:
        raise ValueError(f"choosing the gate's threshold needs at least 2 validation labels in {columns}")
    threshold, before, after = _place_threshold(model, f_va, p_va, y_va, metal_below)
    return GateFit(model, threshold, before, after, 0, 0)


def threshold_trade_off(model, dataset, *, target=None, metal_below: float = METAL_BELOW, points: int = 41,
                        batch_size: int = 128, insulator_from: float = 0.5) -> dict:
    """The two error rates a user notices along a gated model's threshold, on one dataset.

    A threshold trades insulators called metals against metals given a gap; this measures the whole
    curve (``points`` thresholds at quantiles of the logits, plus the model's own) for the output
    with the most labels, and for each rate of insulators called metals in ``(0.02, 0.03, 0.05)``
    the lowest rate of metals given a gap any threshold reaches with at most that many: whether a
    pair of bars can be met at all is then read off the curve, not guessed.
    """
    if getattr(model, "metal_head", None) is None:
        raise ValueError("a threshold trade-off needs a model with a metal gate (metal_head is None)")
    columns = label_columns(model, target)
    j, y, p, z = _most_labelled_output(*_as_arrays(model, *_embed_ungated(model, dataset, columns, batch_size)))
    floor = float(model.output_min or 0.0)
    thresholds = np.unique(np.concatenate([np.quantile(z, np.linspace(0, 1, points)) - 1e-6,
                                           [z.max() + 1.0, model.metal_threshold]]))
    insulator, metal = y >= insulator_from, y < metal_below
    called, given = [], []
    for t in thresholds:
        gated = np.where(z > t, floor, p)
        called.append(float((gated[insulator] < metal_below).mean()) if insulator.any() else float("nan"))
        given.append(float((gated[metal] >= metal_below).mean()) if metal.any() else float("nan"))
    called_a, given_a = np.array(called), np.array(given)
    best_given = {}
    for cap in (0.02, 0.03, 0.05):
        ok = called_a <= cap + 1e-12
        best_given[f"{cap:g}"] = float(given_a[ok].min()) if ok.any() else None
    own = int(np.argmin(np.abs(thresholds - model.metal_threshold)))
    return {"column": columns[j], "n_insulators": int(insulator.sum()), "n_metals": int(metal.sum()),
            "threshold_logit": [round(float(t), 4) for t in thresholds],
            "insulators_called_metals": [round(c, 4) for c in called],
            "metals_given_gap": [round(g, 4) for g in given],
            "at_model_threshold": {"threshold_logit": float(model.metal_threshold),
                                   "insulators_called_metals": called[own], "metals_given_gap": given[own]},
            "lowest_metals_given_gap_with_insulators_called_metals_at_most": best_given}
