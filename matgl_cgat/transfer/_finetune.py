"""``finetune``: what transfer learning adds to training (Hoffmann et al., Digital Discovery 2023).

Copy the source model, re-fit (or keep) its target normalisation, set its output bound, freeze what
the policy does not train, then train with :func:`matgl_cgat.training.fit`. How training works and
its defaults live in :mod:`matgl_cgat.training`; fine-tuning starts from the ``cpu-transfer`` recipe
(peak lr 3e-4, 10 epochs, one triangular cycle), which any :class:`TrainConfig` field overrides.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np

from matgl_cgat.training import TrainConfig, fit, recipe

from ._policies import apply_policy, layerwise_param_groups, unfreeze_next

#: The recipe :func:`finetune` starts from (see :data:`matgl_cgat.training.RECIPES`).
FINETUNE_RECIPE = "cpu-transfer"


def _as_dataset(data, model, progress: bool):
    """Datasets pass through; a ``(structures, labels)`` tuple is converted with the model's converter."""
    if not isinstance(data, tuple):
        return data
    from matgl_cgat.data import load_dataset

    structures, labels = data
    return load_dataset(list(structures), "y", labels=list(labels), converter=model.graph_converter(),
                        progress=progress)


def train_labels(ds, targets) -> np.ndarray:
    """``(N, T)`` labels of a dataset (NaN where missing), without loading graphs when it can."""
    labels = getattr(ds, "labels", None)
    if isinstance(labels, dict) and all(t in labels for t in targets):
        return np.stack([np.asarray(labels[t], dtype=float) for t in targets], axis=1)
    return np.array([[float(ds[i][3].get(t, np.nan)) for t in targets] for i in range(len(ds))])


def finetune(model, train, val=None, *, policy: str = "full", renormalize: bool = True,
             output_min: float | None | str = "auto", config: TrainConfig | None = None,
             out_dir: str | Path | None = None, overwrite: bool = False, **settings):
    """Fine-tune a copy of ``model`` on new data; the source model is left untouched.

    Args:
        model: a trained CGAT (e.g. ``matgl.load_model("CGAT-PBE-BandGap")``), or a MatGL model with
            declared transfer blocks.
        train, val: datasets from :func:`matgl_cgat.data.load_dataset` (any dataset of MatGL
            ``(graph, lattice, state, labels)`` items), or ``(structures, labels)`` tuples. With
            ``val`` the weights of the epoch with the lowest validation MAE are returned; without it,
            those of the last epoch (with ``average_last``, the averaged weights either way).
        policy: freeze policy (see :mod:`matgl_cgat.transfer`); ``"full"`` trains everything.
        renormalize: re-fit the target mean/std on ``train`` (True, default: right when the new
            property's scale differs, e.g. PBE -> HSE gaps) or keep the source model's (False, what the
            reference did silently).
        output_min: lower bound of the returned model's predictions; ``"auto"`` keeps the source
            model's bound only if every training label respects it (otherwise it is dropped, with a
            warning).
        config: training settings (default: the ``cpu-transfer`` recipe).
        out_dir: run folder (resumable; see :func:`matgl_cgat.training.fit`); default: temporary.
        overwrite: discard a previous run in ``out_dir``.
        **settings: :class:`~matgl_cgat.training.TrainConfig` fields overriding ``config``
            (``epochs=20, lr=3e-4, loss="huber", average_last=3, precision="bf16-mixed"``, ...).

    Returns:
        The fine-tuned copy (eval mode, everything trainable again), with a ``finetune`` record in
        ``metadata``, the ``FitResult`` as ``fit_result`` and the policy report as ``finetune_report``.
    """
    config = (config or recipe(FINETUNE_RECIPE)).replace(**settings) if settings else (config or recipe(FINETUNE_RECIPE))
    tuned = copy.deepcopy(model)
    train_ds = _as_dataset(train, tuned, config.progress)
    val_ds = _as_dataset(val, tuned, config.progress)
    if len(train_ds) == 0:
        raise ValueError("finetune: the training set is empty")
    from matgl_cgat.training import dataset_targets

    targets = dataset_targets(train_ds)
    y = train_labels(train_ds, targets)
    if output_min == "auto":
        bound = getattr(tuned, "output_min", None)
        if bound is not None and np.nanmin(y) < bound:
            warnings.warn(f"training labels go below the source model's output bound {bound} (min "
                          f"{np.nanmin(y):.4g}): the fine-tuned model is unbounded", stacklevel=2)
            bound = None
    else:
        bound = output_min
    if hasattr(tuned, "set_output_min"):
        tuned.set_output_min(bound)
    elif bound is not None:
        raise ValueError(f"{type(model).__name__} has no output bound; pass output_min=None")
    if renormalize:
        std = np.nanstd(y, axis=0)
        tuned.set_normalization(np.nanmean(y, axis=0).tolist(), np.where(std > 0, std, 1.0).tolist())
    tuned.train()  # the policy then puts frozen blocks in eval mode
    report = apply_policy(tuned, policy)
    groups = layerwise_param_groups(tuned, config.lr, config.layerwise_lr_decay) if config.layerwise_lr_decay \
        else None
    parent_meta = getattr(model, "metadata", None) or {}
    result = fit(tuned, train_ds, val_ds, config, out_dir=out_dir, overwrite=overwrite, param_groups=groups,
                 unfreeze_next=unfreeze_next,
                 run_info={"policy": policy, "renormalize": renormalize, "output_min": bound,
                           "parent": parent_meta.get("name") if isinstance(parent_meta, dict) else None},
                 may_grow=("config.epochs",) if config.period and not config.average_last else ())
    record = {
        "parent": parent_meta,
        "policy": policy,
        "renormalize": renormalize,
        "trainable_parameters": report.trainable,
        "frozen_parameters": report.frozen,
        "epochs": config.epochs,
        "lr": config.lr,
        "period": config.cycle,
        "loss": config.loss if not getattr(tuned, "predict_log_sigma", False) else "robust_l1",
        **({"huber_delta": config.huber_delta} if config.loss == "huber" else {}),
        "best_val_mae": result.best_val_mae,
        "best_epoch": result.best_epoch if result.best_epoch is not None else -1,
        "unfrozen": [list(u) for u in result.unfrozen],
        **({"weight_average": result.weight_average} if result.weight_average else {}),
        "resumed_from_epoch": result.resumed_from_epoch,
        **({"stopped_at_epoch": result.stopped_at_epoch} if result.stopped_at_epoch is not None else {}),
        "seed": config.seed,
        "output_min": getattr(tuned, "output_min", None),
        "targets": list(result.targets),
        "training": result.record(),
    }
    tuned.metadata = {**(parent_meta if isinstance(parent_meta, dict) else {}), "finetune": record}
    tuned.finetune_report = report
    tuned.fit_result = result
    return tuned
