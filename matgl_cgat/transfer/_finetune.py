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

from matgl_cgat.training import TrainConfig, dataset_targets, fit, recipe, train_labels

from ._policies import apply_policy, layerwise_param_groups, unfreeze_next

#: The recipe :func:`finetune` starts from (see :data:`matgl_cgat.training.RECIPES`).
FINETUNE_RECIPE = "cpu-transfer"


#: Card entries that describe the parent's training and do not carry over to the fine-tuned copy.
_RETRAINED = ("domain", "uncertainty")
#: Card entries that stay true of a fine-tuned copy.
_CARRIED = ("units", "preset", "fidelities", "label_columns")

#: Below this many training structures :func:`finetune` warns that it cannot be expected to fit.
FEW_STRUCTURES = 10


class _OneFidelityData:
    """A one-label dataset seen as a multi-fidelity model's data: its label in one fidelity's column.

    Why: a user who adds a functional to a multi-fidelity model has that functional's labels alone (a
    file with one label column). Under ``policy="fidelity:NAME"`` nothing but that fidelity trains, so
    the other columns are simply missing (NaN), exactly what a several-column file with empty cells
    would give; the view spares the user from building that file.
    """

    def __init__(self, data, columns: list[str], column: str):
        self.data, self.column = data, column
        self.source = dataset_targets(data)[0]
        self.returned_targets = tuple(columns)
        self.ids = getattr(data, "ids", None)
        self.cache_key = getattr(data, "cache_key", None)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        g, lattice, state, labels = self.data[i]
        return g, lattice, state, {self.column: labels[self.source]}

    @property
    def labels(self) -> dict[str, np.ndarray]:
        y = np.asarray(train_labels(self.data, [self.source])[:, 0], dtype=float)
        return {c: (y if c == self.column else np.full(len(y), np.nan)) for c in self.returned_targets}


def _as_fidelity_data(model, policy: str, train_ds, val_ds):
    """One-label data for ``policy="fidelity:NAME"`` of a multi-fidelity model, placed in NAME's column;
    anything else unchanged."""
    fidelities = list(getattr(model, "fidelities", None) or ())
    if len(fidelities) < 2 or not policy.startswith("fidelity:") or len(dataset_targets(train_ds)) != 1:
        return train_ds, val_ds
    name = fidelities[model.fidelity_index(policy.split(":", 1)[1])]
    card = model.metadata if isinstance(getattr(model, "metadata", None), dict) else {}
    columns = [(card.get("label_columns") or {}).get(f, f) for f in fidelities]
    column = columns[fidelities.index(name)]
    # the data's label must be that fidelity's: SCAN gaps put under policy="fidelity:hse" would train
    # the HSE output on SCAN labels, and nothing downstream could tell
    label = dataset_targets(train_ds)[0]
    if label.lower() not in (column.lower(), name.lower()):
        raise ValueError(f"finetune: policy={policy!r} trains fidelity {name!r}, whose labels are {column!r}; the "
                         f"data's label is {label!r}. Name the label column {column!r} (or add a fidelity for it "
                         f"with add_fidelity(..., label_column={label!r}))")
    if val_ds is not None and tuple(dataset_targets(val_ds)) != (label,):
        raise ValueError(f"finetune: the training data's one label is {label!r}, the validation data's "
                         f"{list(dataset_targets(val_ds))}; give both the same label column")
    return (_OneFidelityData(train_ds, columns, column),
            None if val_ds is None else _OneFidelityData(val_ds, columns, column))


def _as_dataset(data, model, progress: bool, role: str = "train"):
    """Datasets pass through; a ``(structures, labels)`` tuple is converted with the model's converter.

    The tuple's lists are explicit, so :func:`~matgl_cgat.data.load_dataset` refuses (rather than
    drops) a structure of the wrong type or a label that is None, NaN, infinite or not a number; the
    error is prefixed with ``role`` (``train``/``val``). A path is refused with the call to make
    first: reading a file needs the name of the label column, which ``finetune`` does not take.
    """
    if data is None and role == "val":
        return None
    if isinstance(data, (str, Path)):
        raise TypeError(f"finetune: {role}={str(data)!r} is a path; finetune takes datasets: read it first with "
                        f"matgl_cgat.data.load_dataset({str(data)!r}, target) (the target names the label "
                        "column), or pass (structures, labels)")
    if isinstance(data, tuple):
        if len(data) != 2:
            raise TypeError(f"finetune: {role} as a tuple must be (structures, labels), got {len(data)} items")
        from matgl_cgat.data import DataError, load_dataset

        structures, labels = data
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
            raise TypeError(f"finetune: {role} labels must be a sequence of numbers, got {type(labels).__name__}")
        try:
            return load_dataset(list(structures), "y", labels=list(labels), converter=model.graph_converter(),
                                progress=progress)
        except DataError as exc:
            raise DataError(f"finetune {role} data: {exc}") from None
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")) or isinstance(data, (dict, bytes)):
        raise TypeError(f"finetune: {role} must be a dataset (matgl_cgat.data.load_dataset) or a (structures, labels) "
                        f"tuple, got {type(data).__name__}")
    if isinstance(data, list) and data and not isinstance(data[0], tuple):
        raise TypeError(f"finetune: {role} is a list of {type(data[0]).__name__}; structures need labels: pass "
                        f"(structures, labels) or a dataset from load_dataset")
    return data


def _check_training_set(y, targets, n: int, renormalize: bool, val, policy: str, config) -> None:
    """Refuse what cannot work and warn about what will probably not, before any training.

    * ``renormalize`` re-fits each target's mean and std on the training labels: with fewer than 2
      distinct values the std is 0 and there is nothing to fit (the model would be scaled by an
      invented std of 1), so it is an error that says to keep the source normalisation instead.
    * Without ``val`` nothing checks the result: the last epoch's weights come back, so say so.
    * A handful of structures cannot be expected to fit a network of this size; say so and point to
      the choices that change least (the head only, the source normalisation).
    """
    if renormalize:
        for j, t in enumerate(targets):
            column = y[:, j][np.isfinite(y[:, j])]
            distinct = np.unique(column)
            if len(distinct) < 2:
                raise ValueError(
                    f"finetune: renormalize=True re-fits the mean and std of {t!r} on the training labels and needs at "
                    f"least 2 distinct values; the training set has {n} structure(s) with "
                    f"{len(distinct)} distinct value(s) {distinct[:3].tolist()}. Pass renormalize=False (CLI: "
                    "--keep-normalization) to keep the source model's normalisation, or give more data"
                )
    if val is None:
        kept = f"the mean of the last {config.average_last} epochs' weights" if config.average_last \
            else "the last epoch's weights"
        warnings.warn(f"finetune: no validation set: {kept} are returned with no validation check of the "
                      "result; pass val= to keep the best epoch's weights", UserWarning, stacklevel=3)
    if n < FEW_STRUCTURES:
        advice = "train the head only (policy='head')" if policy != "head" and not policy.startswith("fidelity:") else ""
        if renormalize:
            advice += (" and " if advice else "") + "keep the source normalisation (renormalize=False)"
        warnings.warn(f"finetune: only {n} training structure(s): so few cannot be expected to fit the model "
                      f"(policy={policy!r}); check the result on held-out data"
                      + (f", and consider: {advice}" if advice else ""), UserWarning, stacklevel=3)


def finetune(model, train, val=None, *, policy: str = "full", renormalize: bool = True,
             output_min: float | None | str = "auto", config: TrainConfig | None = None,
             out_dir: str | Path | None = None, overwrite: bool = False, metal_hidden: int = 64, **settings):
    """Fine-tune a copy of ``model`` on new data; the source model is left untouched.

    Args:
        model: a trained CGAT (e.g. ``matgl.load_model("CGAT-PBE-BandGap")``), or a MatGL model with
            declared transfer blocks.
        train, val: datasets from :func:`matgl_cgat.data.load_dataset` (any dataset of MatGL
            ``(graph, lattice, state, labels)`` items), or ``(structures, labels)`` tuples (a label
            that is None, NaN, infinite or not a number is a :class:`~matgl_cgat.data.DataError`
            naming the structure, never a silently dropped row; a file path is a ``TypeError``:
            read it with ``load_dataset(path, target)`` first). With ``val`` the weights of the epoch
            with the lowest validation MAE are returned; without it, those of the last epoch (with
            ``average_last``, the averaged weights either way), with a ``UserWarning`` that nothing
            checked them. Fewer than ``FEW_STRUCTURES`` (10) training structures give a
            ``UserWarning`` too.
        policy: freeze policy (see :mod:`matgl_cgat.transfer`); ``"full"`` trains everything. With
            ``"fidelity:NAME"`` on a multi-fidelity model, data with one label column is NAME's labels
            (the way to add a functional: ``add_fidelity``, then NAME's data alone).
        renormalize: re-fit the target mean/std on ``train`` (True, default: right when the new
            property's scale differs, e.g. PBE -> HSE gaps) or keep the source model's (False, what the
            reference did silently). Re-fitting needs at least 2 distinct training labels per target
            (a ``ValueError`` otherwise: a std of 0 cannot scale anything).
        output_min: lower bound of the returned model's predictions; ``"auto"`` keeps the source
            model's bound only if every training label respects it (otherwise it is dropped, with a
            warning).
        config: training settings (default: the ``cpu-transfer`` recipe).
        out_dir: run folder (resumable; see :func:`matgl_cgat.training.fit`); default: temporary.
        overwrite: discard a previous run in ``out_dir``.
        metal_hidden: width of the metal gate added when ``metal_weight > 0`` (a setting below) and the
            model has none; a parent's gate is kept and trained on. The gate's threshold is then placed
            on ``val`` (:func:`matgl_cgat.gate.choose_gate_threshold`); without ``val`` it stays at
            logit 0 (probability 0.5), with a warning.
        **settings: :class:`~matgl_cgat.training.TrainConfig` fields overriding ``config``
            (``epochs=20, lr=3e-4, loss="huber", average_last=3, precision="bf16-mixed"``, ...).

    Returns:
        The fine-tuned copy (eval mode, everything trainable again), with a ``finetune`` record in
        ``metadata``, the ``FitResult`` as ``fit_result`` and the policy report as ``finetune_report``.
    """
    config = (config or recipe(FINETUNE_RECIPE)).replace(**settings) if settings else (config or recipe(FINETUNE_RECIPE))
    tuned = copy.deepcopy(model)
    tuned.__dict__.pop("source", None)  # where the parent was loaded from; the copy is new
    if getattr(tuned, "sigma_head", None) is not None:  # fitted to the parent's errors, not the copy's
        tuned.set_sigma_head(None)
    if getattr(tuned, "novelty", None) is not None:  # the stored representations are the parent's
        tuned.set_novelty(None)
    if config.metal_weight > 0:  # the gate trains with the network: keep the parent's as a start, or add one
        if getattr(tuned, "metal_head", None) is None:
            if not hasattr(tuned, "set_metal_gate"):
                raise ValueError(f"metal_weight={config.metal_weight}: {type(model).__name__} has no metal gate")
            tuned.set_metal_gate(metal_hidden)
    elif getattr(tuned, "metal_head", None) is not None:  # reads the parent's representation, not the copy's
        tuned.set_metal_gate(None)
    train_ds = _as_dataset(train, tuned, config.progress, "train")
    val_ds = _as_dataset(val, tuned, config.progress, "val")
    if len(train_ds) == 0:
        raise ValueError("finetune: the training set is empty")
    if val_ds is not None and len(val_ds) == 0:
        raise ValueError("finetune: the validation set is empty; pass val=None to train without one")
    train_ds, val_ds = _as_fidelity_data(tuned, policy, train_ds, val_ds)
    targets = dataset_targets(train_ds)
    fidelities = getattr(tuned, "fidelities", None)
    if fidelities and len(targets) != len(fidelities):
        raise ValueError(f"finetune: a multi-fidelity model needs one label column per fidelity {list(fidelities)}, in "
                         f"that order (missing labels as NaN/None with require='any'), or one label column with "
                         f"policy='fidelity:NAME' (NAME's labels alone); the data has {list(targets)}")
    if policy.startswith("fidelity:") and renormalize:
        raise ValueError(f"finetune: policy={policy!r} trains one fidelity alone so that the others cannot change, "
                         "but renormalize=True would re-fit every fidelity's mean and std: pass renormalize=False "
                         "(add_fidelity already set the new fidelity's normalisation)")
    y = train_labels(train_ds, targets)
    _check_training_set(y, targets, len(train_ds), renormalize, val_ds, policy, config)
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
    if renormalize:  # every std > 0: _check_training_set refused fewer than 2 distinct values
        tuned.set_normalization(np.nanmean(y, axis=0).tolist(), np.nanstd(y, axis=0).tolist())
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
    parent_card = {k: v for k, v in (parent_meta.items() if isinstance(parent_meta, dict) else ())
                   if k not in _RETRAINED}
    record = {
        "parent": parent_card,
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
    # The copy's card: what stays true of it (units, preset, fidelities), what it now predicts, and the
    # fine-tuning record holding the parent's card; the parent's name, property and scores do not carry.
    tuned.metadata = {k: parent_card[k] for k in _CARRIED if k in parent_card}
    tuned.metadata.update(property=targets[0] if len(targets) == 1 else list(targets), finetune=record)
    if hasattr(tuned, "represent"):  # a CGAT: its graphs name elements the same way, so the domain is cheap
        from matgl_cgat.domain import TrainingDomain

        domain = TrainingDomain.from_dataset(train_ds, "finetune training set")
        if policy.startswith("fidelity:") and isinstance(parent_meta, dict) and parent_meta.get("domain"):
            # the other fidelities keep what they were trained on: their domain is the union
            domain = TrainingDomain.from_dict(parent_meta["domain"]).merged(domain)
        tuned.metadata["domain"] = domain.to_dict()
    if config.metal_weight > 0:
        if val_ds is not None:
            from matgl_cgat.gate import choose_gate_threshold

            gate = choose_gate_threshold(tuned, val_ds, target=list(targets), metal_below=config.metal_below)
            record.update(metal_gate={"trained": f"with the network (metal_weight {config.metal_weight:g}, "
                                                 f"regression on {config.metal_regression} labels)",
                                      "threshold_logit": gate.threshold, "val_before": gate.val_before,
                                      "val_after": gate.val_after})
        else:
            warnings.warn("finetune: no validation set to place the metal gate's threshold; it stays at logit 0",
                          stacklevel=2)
    tuned.finetune_report = report
    tuned.fit_result = result
    return tuned
