"""The Lightning module every CGAT training goes through: any number of targets, missing labels masked.

The network predicts targets normalised by the model's stored mean and std (one per target). The
loss is the chosen point loss (L1, Huber or MSE; the robust L1 of Kendall & Gal when the model
predicts log sigma) on the normalised targets, averaged over the labels that exist: a structure
without an HSE gap still teaches the PBE gap. Errors are accumulated as sums and counts and reduced
over processes at the end of an epoch, so the logged MAE is exact whatever the batch sizes and the
number of processes.

Logged per epoch: ``train_loss``, ``val_loss``; ``train_mae``/``val_mae`` (one target: the MAE in
the target's units; several: the mean over targets of MAE / std, a unit-free score) and, with
several targets, ``train_mae_<target>``/``val_mae_<target>`` in each target's units.
``val_mae`` picks the best epoch. With ``TrainConfig.metal_weight > 0`` the model's metal gate
trains with the regression (a cross-entropy on metal-versus-non-metal, added to the loss with that
weight) and ``train_metal_loss``/``val_metal_loss`` are logged too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as pl
import torch
import torch.nn.functional as F

from ._config import TrainConfig
from ._data import GraphBatch


def point_loss(name: str, pred: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """Element-wise loss (no reduction) by name."""
    if name == "l1":
        return (pred - target).abs()
    if name == "mse":
        return (pred - target) ** 2
    if name == "huber":
        return F.huber_loss(pred, target, delta=delta, reduction="none")
    raise ValueError(f"unknown loss {name!r}")


class TrainingModule(pl.LightningModule):
    """Trains ``model`` (a CGAT or any model with ``forward_normalized``, ``data_mean``, ``data_std``)."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, targets: Sequence[str], param_groups=None):
        super().__init__()
        self.model = model
        self.config = config
        self.targets = tuple(targets)
        self._param_groups = param_groups
        ntargets = len(self.targets)
        weights = config.target_weights or (1.0,) * ntargets
        if len(weights) != ntargets:
            raise ValueError(f"target_weights has {len(weights)} entries for {ntargets} targets {self.targets}")
        if config.metal_weight > 0 and getattr(model, "metal_head", None) is None:
            raise ValueError(f"metal_weight={config.metal_weight} trains the model's metal gate, but "
                             f"{type(model).__name__} has none: build it with metal_hidden=... or call "
                             "set_metal_gate(hidden) first")
        self.register_buffer("target_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        self._sums: dict[str, torch.Tensor] = {}
        self.start_epoch: int | None = None  # set when training starts (> 0 when resumed)

    def on_train_start(self) -> None:
        self.start_epoch = self.current_epoch

    # --- one batch -------------------------------------------------------------------------------
    def _errors(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(loss, per-target sum of absolute errors in target units, per-target label counts, the metal
        cross-entropy or None when no gate trains)."""
        model, cfg = self.model, self.config
        joint = cfg.metal_weight > 0
        if joint:  # one pass through the network serves the regression and the gate
            features = model.represent(batch.graph)
            out = model.head_output(features).float()
        else:
            out = model.forward_normalized(batch.graph).float()
        ntargets = len(self.targets)
        mean, std = model.data_mean, model.data_std
        y = batch.labels
        labelled = torch.isfinite(y)
        # a hurdle model's regression never sees a metal's label: the gate answers for those
        present = labelled & (y >= cfg.metal_below) if joint and cfg.metal_regression == "non-metals" else labelled
        target = torch.where(present, (y - mean) / std, torch.zeros_like(y))
        pred = out[:, :ntargets]
        if getattr(model, "predict_log_sigma", False):
            log_sigma = out[:, ntargets : 2 * ntargets]
            per = math.sqrt(2.0) * (pred - target).abs() * torch.exp(-log_sigma) + log_sigma
        else:
            per = point_loss(cfg.loss, pred, target, cfg.huber_delta)
        per = torch.where(present, per, torch.zeros_like(per))
        counts = present.sum(0)
        per_target = per.sum(0) / counts.clamp(min=1)
        has = (counts > 0).float() * self.target_weights
        loss = (per_target * has).sum() / has.sum().clamp(min=1e-12)
        abs_err = torch.where(present, ((pred.detach() - target) * std).abs(), torch.zeros_like(pred))
        if not joint:
            return loss, abs_err.sum(0), counts, None
        metal = (torch.where(labelled, y, torch.ones_like(y)) < cfg.metal_below).float()
        bce = F.binary_cross_entropy_with_logits(model.metal_logit(features).float(), metal, reduction="none")
        metal_loss = torch.where(labelled, bce, torch.zeros_like(bce)).sum() / labelled.sum().clamp(min=1)
        return loss + cfg.metal_weight * metal_loss, abs_err.sum(0), counts, metal_loss

    def _accumulate(self, stage: str, loss, abs_err, counts, n: int, metal_loss=None) -> None:
        sums = self._sums.get(stage)
        extra = [] if metal_loss is None else [metal_loss.detach().reshape(1) * n]
        row = torch.cat([loss.detach().reshape(1) * n, torch.tensor([float(n)], device=loss.device),
                         abs_err.detach(), counts.float(), *extra])
        self._sums[stage] = row if sums is None else sums + row

    def _log_epoch(self, stage: str) -> None:
        sums = self._sums.pop(stage, None)
        distributed = self.trainer is not None and self.trainer.world_size > 1
        if sums is None:
            if not distributed:
                return
            joint = self.config.metal_weight > 0  # the reduction needs every rank, with the same layout
            sums = torch.zeros(2 + 2 * len(self.targets) + int(joint), device=self.device)
        if distributed:
            sums = self.trainer.strategy.reduce(sums.clone(), reduce_op="sum")
        ntargets = len(self.targets)
        loss = float(sums[0] / sums[1].clamp(min=1))
        abs_err, counts = sums[2 : 2 + ntargets], sums[2 + ntargets : 2 + 2 * ntargets]
        mae = abs_err / counts.clamp(min=1)
        metrics = {f"{stage}_loss": loss}
        if sums.numel() > 2 + 2 * ntargets:
            metrics[f"{stage}_metal_loss"] = float(sums[-1] / sums[1].clamp(min=1))
        if ntargets == 1:
            metrics[f"{stage}_mae"] = float(mae[0])
        else:
            seen = counts > 0
            std = self.model.data_std.to(mae.device)
            metrics[f"{stage}_mae"] = float((mae[seen] / std[seen]).mean()) if bool(seen.any()) else float("nan")
            for t, m, c in zip(self.targets, mae.tolist(), counts.tolist()):
                if c > 0:
                    metrics[f"{stage}_mae_{t}"] = m
        # every rank holds the reduced values already: no further synchronisation needed
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=False, sync_dist=False, rank_zero_only=False)

    def training_step(self, batch: GraphBatch, batch_idx: int):
        loss, abs_err, counts, metal_loss = self._errors(batch)
        self._accumulate("train", loss, abs_err, counts, len(batch), metal_loss)
        return loss

    def validation_step(self, batch: GraphBatch, batch_idx: int):
        loss, abs_err, counts, metal_loss = self._errors(batch)
        self._accumulate("val", loss, abs_err, counts, len(batch), metal_loss)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device) if isinstance(batch, GraphBatch) else super().transfer_batch_to_device(
            batch, device, dataloader_idx)

    # --- optimiser ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.config
        groups = self._param_groups or [{"params": list(self.model.parameters()), "lr": cfg.lr}]
        if not cfg.gradual_unfreeze_every:  # frozen parameters never need optimiser state
            groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
            groups = [g for g in groups if g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        peaks = [g["lr"] for g in optimizer.param_groups]
        # torch's triangular CyclicLR, stepped once per epoch: low*lr -> lr -> low*lr over `cycle` epochs
        schedule = torch.optim.lr_scheduler.CyclicLR(
            optimizer, base_lr=[cfg.low * p for p in peaks], max_lr=peaks, step_size_up=cfg.cycle / 2,
            mode="triangular", cycle_momentum=False,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
