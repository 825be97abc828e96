"""``fit(model, train, val, config)``: the one place where a model trains.

Lightning does the work: ``Trainer`` (any accelerator, device count, node count, strategy and
precision), ``ModelCheckpoint`` (the best validation epoch, weights only, and ``last.ckpt`` each
epoch), ``CSVLogger`` with ``LearningRateMonitor`` (the per-epoch table), torch's ``CyclicLR``
(the reference's triangular schedule, stepped per epoch) and ``AveragedModel`` (weight averaging).
What this module adds is what a run folder must guarantee (see ``_run.py``) and the choice of the
weights to return.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from matgl_cgat._allocator import keep_freed_memory
from ._callbacks import EpochErrorsBar, GradualUnfreezing, KeepFrozenInEval, StopFile, WeightAveraging
from ._compile import compiled_for_training
from ._config import TrainConfig
from ._data import GraphDataModule, dataset_targets
from ._module import TrainingModule
from ._run import (
    RunFolder,
    SafeCheckpointIO,
    data_digest,
    load_checkpoint,
    read_metrics,
    tensor_digest,
    write_metrics_csv,
)


@dataclass
class FitResult:
    """What a training run returns. ``model`` holds the chosen weights (best epoch or averaged)."""

    model: torch.nn.Module
    config: TrainConfig
    targets: tuple[str, ...]
    out_dir: Path | None
    best_epoch: int | None
    best_val_mae: float | None
    resumed_from_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    weight_average: dict[str, Any] | None = None
    unfrozen: list[tuple[int, str]] = field(default_factory=list)
    is_global_zero: bool = True
    world_size: int = 1
    stopped_at_epoch: int | None = None

    @property
    def best_val_mae_per_target(self) -> dict[str, float] | None:
        """Validation MAE of each target (its units) at the best epoch."""
        row = next((r for r in self.history if r.get("epoch") == self.best_epoch), None)
        if row is None:
            return None
        if len(self.targets) == 1:
            return {self.targets[0]: row.get("val_mae")}
        return {t: row.get(f"val_mae_{t}") for t in self.targets}

    def record(self) -> dict[str, Any]:
        """Plain values for a model card."""
        return {
            "config": self.config.to_dict(),
            "targets": list(self.targets),
            "best_epoch": self.best_epoch,
            "best_val_mae": self.best_val_mae,
            **({"best_val_mae_per_target": self.best_val_mae_per_target} if len(self.targets) > 1 else {}),
            "resumed_from_epoch": self.resumed_from_epoch,
            "epochs_run": self.epochs_run,
            "seconds": round(self.seconds, 1),
            "world_size": self.world_size,
            **({"stopped_at_epoch": self.stopped_at_epoch} if self.stopped_at_epoch is not None else {}),
            **({"weight_average": self.weight_average} if self.weight_average else {}),
            **({"unfrozen": [list(u) for u in self.unfrozen]} if self.unfrozen else {}),
        }


def _state_without_prefix(state: dict[str, torch.Tensor], prefix: str = "model.") -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _validate(module: TrainingModule, datamodule: GraphDataModule, config: TrainConfig) -> float | None:
    """``val_mae`` of the module's current weights, by Lightning's own validation loop (all ranks)."""
    if datamodule.val_set is None:
        return None
    trainer = pl.Trainer(accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
                         strategy=config.strategy, precision=config.precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*overridden `transfer_batch_to_device`.*")
        warnings.filterwarnings("ignore", ".*sync_dist=True.*")
        return float(trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val_mae"])


def fit(model: torch.nn.Module, train, val=None, config: TrainConfig | None = None, *,
        out_dir: str | Path | None = None, overwrite: bool = False, run_info: dict[str, Any] | None = None,
        param_groups: list[dict] | None = None, unfreeze_next=None, may_grow: tuple[str, ...] = (),
        extra_callbacks: list[pl.Callback] | None = None, profiler=None) -> FitResult:
    """Train ``model`` in place on ``train``, choose its weights on ``val``; resumable from ``out_dir``.

    Args:
        model: a CGAT (or a model with ``forward_normalized``, ``data_mean``, ``data_std`` and
            ``ntargets``), normalisation already set; its mode and frozen parameters are respected.
        train, val: datasets of MatGL ``(graph, lattice, state, {target: label})`` items; a model with
            ``ntargets`` T needs items with T labels (NaN where missing).
        config: :class:`TrainConfig` (default: ``TrainConfig()``).
        out_dir: run folder; default: a temporary one (then nothing resumes). A file ``out_dir/STOP``
            ends the run at the end of the current epoch (graceful; the same call resumes it later).
        overwrite: discard a previous run in ``out_dir`` instead of resuming it.
        run_info: extra plain values recorded in ``run.json`` and checked on resume (policy, parent...).
        param_groups: optimiser groups (``{"params": [...], "lr": ...}``); default: one group.
        unfreeze_next: ``f(model) -> block name or None`` for ``config.gradual_unfreeze_every``.
        may_grow: ``run.json`` keys allowed to grow on resume (see :meth:`RunFolder.start`).
        extra_callbacks, profiler: passed to the ``Trainer`` (e.g. a Lightning profiler for benchmarks).

    Returns:
        :class:`FitResult`; ``result.model`` is ``model`` with the best validation epoch's weights (the
        last epoch's without ``val``; the averaged ones with ``config.average_last``). With several
        processes every rank returns the same weights; only rank 0 (``result.is_global_zero``)
        should write files.

    Raises:
        RunFolderMismatch: ``out_dir`` holds a run started with other settings, data or weights.
    """
    config = config or TrainConfig()
    targets = dataset_targets(train)
    ntargets = getattr(model, "ntargets", 1)
    if len(targets) != ntargets:
        raise ValueError(f"the data carries {len(targets)} target(s) {list(targets)} but the model predicts "
                         f"{ntargets}: build it with ntargets={len(targets)} or load the data with one target")
    if val is not None and len(val) == 0:
        val = None
    if config.allocator == "keep":
        keep_freed_memory()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    t0 = time.time()

    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cgat_fit_")
        out_dir_path = Path(tmp.name)
    else:
        out_dir_path = Path(out_dir)
    run = RunFolder(out_dir_path)
    is_zero = _is_global_zero()
    record = {
        # settings that change how fast a run goes, not what it computes, may differ when it resumes
        "config": {k: v for k, v in config.to_dict().items()
                   if k not in ("progress", "num_workers", "allocator", "compile")},
        "targets": list(targets),
        "model": {"class": type(model).__name__, "start_weights": tensor_digest(model.state_dict())},
        "data": {"train": data_digest(train, targets), "val": data_digest(val, targets)},
        **(run_info or {}),
    }
    if overwrite and not is_zero:
        resume = False  # rank 0 clears the folder; the others must not read it meanwhile
    else:
        resume = run.start(record, overwrite=overwrite, is_global_zero=is_zero, may_grow=may_grow)

    module = TrainingModule(model, config, targets, param_groups)
    datamodule = GraphDataModule(train, val, targets, config.batch_size, config.seed, config.num_workers)
    ckpt_dir = out_dir_path / "checkpoints"
    # every epoch overwrites checkpoints/last.ckpt: a top-1 checkpoint without a monitor (Lightning 2.6 only
    # writes save_last=True's file when a top-k checkpoint is written, and save_top_k=0 writes none)
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
    callbacks: list[pl.Callback] = []
    averager = None
    if config.average_last:
        averager = WeightAveraging(config.epochs - config.average_last)
        callbacks.append(averager)  # its hooks run before the checkpoint's: last.ckpt holds the mean with the epoch
    best = None
    if val is not None:
        best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_mae", mode="min", save_top_k=1,
                               save_weights_only=True, enable_version_counter=False, auto_insert_metric_name=False)
        callbacks.append(best)
    unfreezer = None
    if config.gradual_unfreeze_every:
        if unfreeze_next is None:
            raise ValueError("gradual_unfreeze_every needs unfreeze_next (finetune provides it)")
        unfreezer = GradualUnfreezing(config.gradual_unfreeze_every, unfreeze_next)
        callbacks.append(unfreezer)
    stop = StopFile(out_dir_path / "STOP")
    callbacks += [KeepFrozenInEval(), stop, last, LearningRateMonitor(logging_interval="epoch"),
                  *(extra_callbacks or [])]
    if config.progress:
        card = getattr(model, "metadata", None)
        callbacks.append(EpochErrorsBar(card.get("units", "") if isinstance(card, dict) and len(targets) == 1 else ""))

    trainer = pl.Trainer(
        max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
        num_nodes=config.num_nodes, strategy=config.strategy, precision=config.precision,
        logger=CSVLogger(out_dir_path, name="logs"), callbacks=callbacks, plugins=[SafeCheckpointIO()],
        use_distributed_sampler=False, enable_progress_bar=config.progress, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=1.0 if val is not None else 0, default_root_dir=out_dir_path,
        log_every_n_steps=1 << 30, profiler=profiler,
    )
    if trainer.world_size > 1:
        if out_dir is None:
            raise ValueError("training with several processes needs an out_dir on a file system all of them see "
                             "(the best checkpoint is written by rank 0 and read by every rank)")
        if config.gradual_unfreeze_every:
            raise ValueError("gradual_unfreeze_every does not work with several processes: DistributedDataParallel "
                             "only averages the gradients of parameters trainable when training starts")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*Experiment logs directory.*")
        warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # frozen blocks, on purpose
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")  # epoch-level logging only
        warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")  # resuming
        warnings.filterwarnings("ignore", ".*overridden `transfer_batch_to_device`.*")
        warnings.filterwarnings("ignore", ".*sync_dist=True.*")  # the module reduces its sums over ranks itself
        with compiled_for_training(model, config.compile, config.epochs * len(train), config.accelerator):
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(run.last_checkpoint) if resume else None)
    # a run resumed after its last epoch trains nothing: it "resumes" at its end
    start_epoch = module.start_epoch if module.start_epoch is not None else trainer.current_epoch

    best_epoch = best_val = None
    if best is not None and run.best_checkpoint.is_file():
        saved = load_checkpoint(run.best_checkpoint)
        best_epoch, best_val = int(saved["epoch"]), float(best.best_model_score)
    weight_average = None
    if averager is not None:
        averager.restore(model)  # a finished run resumed for nothing has the mean only in its checkpoint
        if averager.averaged is None and stop.stopped_at is not None:
            averager = None  # stopped before the averaging window: the best (or last) epoch's weights are returned
    if averager is not None:
        if averager.averaged is None:
            raise RuntimeError(f"{out_dir_path}: no epoch was averaged")
        if len(averager.epochs) < config.average_last:
            warnings.warn(f"{out_dir_path}: averaged only epochs {averager.epochs}, not the last "
                          f"{config.average_last}", stacklevel=2)
        model.load_state_dict(averager.averaged_state(model))
        weight_average = {"epochs": list(averager.epochs), "val_mae": _validate(module, datamodule, config)}
    elif best_epoch is not None:
        model.load_state_dict(_state_without_prefix(saved["state_dict"]))
    history = read_metrics(out_dir_path)
    if trainer.is_global_zero and out_dir is not None:
        write_metrics_csv(history, out_dir_path / "metrics.csv")
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, "_frozen_modules"):
        model._frozen_modules = []
    model.eval()
    result = FitResult(
        model=model, config=config, targets=targets, out_dir=None if tmp else out_dir_path,
        best_epoch=best_epoch, best_val_mae=best_val, resumed_from_epoch=start_epoch,
        epochs_run=trainer.current_epoch - start_epoch, seconds=time.time() - t0, history=history,
        weight_average=weight_average, unfrozen=list(unfreezer.unfrozen) if unfreezer else [],
        is_global_zero=trainer.is_global_zero, world_size=trainer.world_size, stopped_at_epoch=stop.stopped_at,
    )
    if tmp is not None:
        tmp.cleanup()
    return result


def _is_global_zero() -> bool:
    """Rank 0 of a launch, before the trainer exists (Lightning's reading of RANK, LOCAL_RANK, SLURM_PROCID...)."""
    from lightning.fabric.utilities.rank_zero import _get_rank

    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)) or 0)
    return (_get_rank() or 0) == 0 and node == 0
