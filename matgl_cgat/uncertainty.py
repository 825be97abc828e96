"""A standard deviation with every prediction, and a measure of how far to trust it.

Method (the cheapest that can be honestly calibrated): the trained network is frozen; a small MLP
(the model's ``sigma_head``) maps the pooled crystal representation to log(sigma) and is fitted to
the network's own residuals on the training set by maximum likelihood. Training residuals can be
smaller than those on unseen crystals, so the head's output is then recalibrated on the validation
set, ``log sigma' = a + b log sigma`` (two numbers, chosen to minimise the validation NLL and folded
into the head's last layer). The test split, untouched by both steps, measures the calibration: the
fraction of errors inside the 68% and 95% intervals, the NLL, and how well sigma ranks the errors
(Spearman).

The errors are modelled as **Laplace**-distributed with standard deviation sigma, not Gaussian: the
models' errors are sharply peaked with heavy tails (band gaps of metals are predicted almost exactly,
a few crystals are far off). With a Gaussian fit the shipped HSE gap model put 80% of its test errors
inside ±sigma and 94% inside ±1.96 sigma, exactly what a Laplace distribution does; so the central
68% interval is ±0.81 sigma and the 95% interval ±2.12 sigma (:func:`half_width`). Sigma is still a
standard deviation: ``value ± sigma`` covers about 76% of errors.

An ensemble would also catch the network's own training noise, at N times the training cost; the
head costs one pass over the data and a minute of fitting. Its figures for the shipped models are in
``benchmarks/RESULTS.md`` and each model card.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

#: Central-interval levels of the calibration curve.
LEVELS = tuple(np.round(np.linspace(0.05, 0.95, 19), 2).tolist())
_SQRT2 = float(np.sqrt(2.0))


def half_width(level: float) -> float:
    """Half-width, in units of sigma, of the central ``level`` interval of a Laplace distribution
    with standard deviation sigma (0.68 -> 0.81, 0.95 -> 2.12)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(-np.log(1.0 - level) / _SQRT2)


@dataclass(frozen=True)
class Calibration:
    """How well sigma describes the errors on one set of structures."""

    n: int
    mae: float
    mean_sigma: float
    coverage_68: float  # fraction of errors inside the central 68% interval (ideal 0.68)
    coverage_95: float  # ... inside the 95% interval (ideal 0.95)
    nll: float  # mean Laplace negative log-likelihood (lower is better)
    spearman: float  # rank correlation of sigma with |error|
    levels: tuple[float, ...]  # nominal central-interval levels ...
    observed: tuple[float, ...]  # ... and the fraction of errors inside each

    def to_dict(self) -> dict:
        return asdict(self)


def calibration(y_true, y_pred, sigma) -> Calibration:
    """Calibration of the Laplace intervals ``y_pred ± half_width(level) * sigma`` against ``y_true``."""
    from scipy.stats import spearmanr

    y, p, s = (np.asarray(a, dtype=float).reshape(-1) for a in (y_true, y_pred, sigma))
    if not len(y) == len(p) == len(s) or len(y) == 0:
        raise ValueError(f"need equal, non-zero lengths, got {len(y)}, {len(p)}, {len(s)}")
    if not np.all(s > 0):
        raise ValueError("sigma must be positive")
    err = np.abs(y - p)
    z = err / s
    observed = tuple(float(np.mean(z <= half_width(level))) for level in LEVELS)
    nll = float(np.mean(_SQRT2 * z + np.log(s / _SQRT2) + np.log(2.0)))
    rho = float(spearmanr(s, err).statistic) if len(y) > 2 else float("nan")
    return Calibration(len(y), float(err.mean()), float(s.mean()), float(np.mean(z <= half_width(0.68))),
                       float(np.mean(z <= half_width(0.95))), nll, rho, LEVELS, observed)


@dataclass
class SigmaFit:
    """The model with its fitted head, the recalibration and the validation calibration."""

    model: torch.nn.Module
    shift: float  # a in log sigma' = a + b log sigma
    slope: float  # b
    val: Calibration  # of the first (or only) output
    n_train: int
    val_by_target: dict  # {label column: Calibration} for every output with validation labels


def _frozen_pass(model, dataset, batch_size: int, step) -> list:
    """``step(model, batched graph)`` over a dataset in order, in eval mode without gradients."""
    from matgl_cgat.graph import batch_graphs

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [step(model, batch_graphs([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))]))
                    for start in range(0, len(dataset), batch_size)]
    finally:
        model.train(was_training)


def _features_and_prediction(model, g):
    f = model.represent(g)
    return f, model.predict_from_features(f)  # gated like the model's answers: sigma describes those


def label_columns(model, targets=None) -> list[str]:
    """The label columns a model's outputs correspond to: ``targets`` if given; for a multi-fidelity
    model its card's ``label_columns`` (else the fidelity names); else the card's property (or "y")."""
    if targets is not None:
        return [targets] if isinstance(targets, str) else list(targets)
    card = getattr(model, "metadata", None) or {}
    if getattr(model, "fidelities", None):
        columns = card.get("label_columns") or {}
        return [columns.get(f, f) for f in model.fidelities]
    return [card.get("property") or "y"]


def embed(model, dataset, target=None, batch_size: int = 128):
    """``(features (N, D), predictions (N, T), labels (N, T))`` for a dataset, one pass with the network
    frozen; labels NaN where missing."""
    from matgl_cgat.training import train_labels

    labels = torch.as_tensor(train_labels(dataset, label_columns(model, target)), dtype=torch.float32)
    feats, preds = zip(*_frozen_pass(model, dataset, batch_size, _features_and_prediction))
    return torch.cat(feats), torch.cat(preds), labels


def checked_head_data(train, val, max_train: int | None, seed: int, what: str):
    """The training set a head on the frozen network learns from: at least 20 structures in each of
    ``train`` and ``val`` (an error naming ``what`` otherwise), a seeded subset of ``max_train``."""
    if len(val) < 20 or len(train) < 20:
        raise ValueError(f"{what} needs at least 20 training and 20 validation structures, got {len(train)} "
                         f"and {len(val)}")
    if max_train is not None and len(train) > max_train:
        rng = np.random.default_rng(seed)
        train = train.subset(np.sort(rng.choice(len(train), max_train, replace=False)).tolist())
    return train


def fit_head_full_batch(head: torch.nn.Module, train_loss, val_loss, *, epochs: int, lr: float,
                        weight_decay: float) -> float:
    """Full-batch Adam on ``train_loss()`` for ``epochs`` steps, keeping the head's state with the lowest
    ``val_loss()`` (early stopping without a patience to tune); returns that validation loss."""
    optimiser = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state = float("inf"), copy.deepcopy(head.state_dict())
    for _ in range(epochs):
        optimiser.zero_grad()
        train_loss().backward()
        optimiser.step()
        with torch.no_grad():
            v = float(val_loss())
        if v < best:
            best, best_state = v, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    return best


def _nll(log_sigma: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Laplace negative log-likelihood (up to a constant) with standard deviation exp(log_sigma), over
    the finite residuals (missing labels are NaN)."""
    present = torch.isfinite(residual)
    return (_SQRT2 * residual[present].abs() * torch.exp(-log_sigma[present]) + log_sigma[present]).mean()


def fit_sigma_head(model, train, val, *, target=None, hidden: int = 32, epochs: int = 400,
                   lr: float = 3e-3, weight_decay: float = 1e-4, max_train: int | None = 8000, seed: int = 0,
                   batch_size: int = 128) -> SigmaFit:
    """Fit an uncertainty head to a copy of a trained CGAT; the network itself is unchanged.

    Works for one target, several, or a multi-fidelity model (one sigma per output, missing labels
    ignored; one recalibration for all outputs, on residuals in normalised units).

    Args:
        train: structures whose residuals the head learns from (a seeded subset of ``max_train``).
        val: held-out structures for early stopping and the two-number recalibration.
        target: the label column(s) of the outputs (default: see :func:`label_columns`).
        hidden: width of the head's hidden layer.
        epochs: full-batch Adam steps at most (the step with the lowest validation NLL is kept).
    """
    train = checked_head_data(train, val, max_train, seed, "fitting sigma")
    tuned = copy.deepcopy(model)
    columns = label_columns(tuned, target)
    f_tr, p_tr, y_tr = embed(tuned, train, columns, batch_size)
    f_va, p_va, y_va = embed(tuned, val, columns, batch_size)
    if int(torch.isfinite(y_tr).sum()) < 20 or int(torch.isfinite(y_va).sum()) < 20:
        raise ValueError("need at least 20 training and 20 validation labels")
    std = tuned.data_std.float()
    r_tr, r_va = (y_tr - p_tr) / std, (y_va - p_va) / std

    torch.manual_seed(seed)
    if getattr(tuned, "novelty", None) is not None and float(tuned.novelty.widen) != 1.0:
        # the widening was measured against the old head's sigma: it means nothing for the new one
        warnings.warn("fit_sigma_head: the model's representation-domain check no longer widens sigma; refit it "
                      "(matgl_cgat.novelty.fit_representation_domain) to measure the widening again", UserWarning,
                      stacklevel=2)
        tuned.novelty.widen.fill_(1.0)
    tuned.set_sigma_head(hidden)
    head = tuned.sigma_head
    with torch.no_grad():  # start at the training residuals' overall scale
        head[-1].bias.fill_(float(torch.log(r_tr[torch.isfinite(r_tr)].abs().mean() + 1e-6)))
    fit_head_full_batch(head, lambda: _nll(tuned.sigma_output(f_tr), r_tr), lambda: _nll(tuned.sigma_output(f_va), r_va),
                        epochs=epochs, lr=lr, weight_decay=weight_decay)

    # Recalibrate on validation: log sigma' = a + b log sigma, folded into the last layer.
    with torch.no_grad():
        raw = tuned.sigma_output(f_va)
    ab = torch.tensor([0.0, 1.0], requires_grad=True)
    lbfgs = torch.optim.LBFGS([ab], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        loss = _nll(ab[0] + ab[1] * raw, r_va)
        loss.backward()
        return loss

    lbfgs.step(closure)
    a, b = (float(x) for x in ab.detach())
    with torch.no_grad():
        head[-1].weight.mul_(b)
        head[-1].bias.mul_(b).add_(a)
        sigma_va = torch.exp(tuned.sigma_output(f_va)) * std
    tuned.eval()
    by_target = {}
    for j, name in enumerate(columns):
        have = torch.isfinite(y_va[:, j])
        if int(have.sum()) > 2:
            by_target[name] = calibration(y_va[have, j].numpy(), p_va[have, j].numpy(), sigma_va[have, j].numpy())
    first = next(iter(by_target.values()), None)
    if first is None:
        raise ValueError("no output has more than 2 validation labels to measure the calibration on")
    return SigmaFit(tuned, a, b, first, int(torch.isfinite(y_tr).any(1).sum()), by_target)


def predict_with_sigma(model, dataset, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, sigma)`` for every item of a dataset, in order: ``(N,)`` arrays for one output,
    ``(N, T)`` for several (a multi-fidelity model's columns follow ``model.fidelities``)."""
    preds, sigmas = zip(*_frozen_pass(model, dataset, batch_size, lambda m, g: m.outputs(g, return_sigma=True)))
    p, s = torch.cat(preds).numpy(), torch.cat(sigmas).numpy()
    return (p[:, 0], s[:, 0]) if model.ntargets == 1 else (p, s)
