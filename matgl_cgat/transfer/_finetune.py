"""Fine-tuning (and training) CGAT with Lightning: the transfer-learning recipe of Hoffmann et al.

Defaults follow the reference's transfer runs: AdamW (lr 1.25e-4, weight decay 1e-6), L1 loss on
normalised targets (``loss="huber"`` or ``"mse"`` for targets piled up at one value, such as hull
distances, where L1 stalls at the median), batch 64, triangular cyclical learning rate stepped per
epoch with a period of 70 epochs (multiplier 0.1 -> 1 -> 0.1), best weights by validation MAE (or, with
``average_last``, the mean of the last epochs' weights). Runs are resumable: an interrupted run continues
from ``out_dir/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as pl
import numpy as np
import torch
import torch.nn.functional as F

from matgl_cgat._io import file_mode

from ._policies import apply_policy, keep_frozen_in_eval, layerwise_param_groups, unfreeze_next
from ._schedule import triangular_multiplier

#: Documented defaults of :func:`finetune` (from the paper's transfer-learning runs where it gives them).
DEFAULTS = {
    "lr": 1.25e-4,  # AdamW learning rate at the cycle's peak
    "weight_decay": 1e-6,
    "batch_size": 64,
    "epochs": 140,  # two cycles
    "period": 70,  # epochs per triangular cycle (paper: 70 for transfer, 130 from scratch)
    "low": 0.1,  # multiplier at the start and end of a cycle
    "loss": "l1",  # on normalised targets; "huber" (delta in std units) or "mse" are the alternatives
    "huber_delta": 1.0,
}

LOSSES = ("l1", "huber", "mse")


def _point_loss(name: str, delta: float):
    """The training loss by name. L1 is the reference's; Huber/MSE keep a gradient that scales with the
    error, which matters when half the targets sit at one value (L1's sign gradient then settles on it)."""
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    if name == "huber":
        return lambda pred, target: F.huber_loss(pred, target, delta=delta)
    raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")


class CGATLightning(pl.LightningModule):
    """Lightning wrapper: L1 (or Huber, MSE, robust L1) on normalised targets, MAE in the target's units."""

    def __init__(self, model, lr: float, weight_decay: float, period: int, low: float = 0.1,
                 layerwise_lr_decay: float | None = None, gradual_unfreeze_every: int | None = None,
                 loss: str = "l1", huber_delta: float = 1.0):
        super().__init__()
        self.model = model
        self.point_loss = _point_loss(loss, huber_delta)
        self.lr, self.weight_decay, self.period, self.low = lr, weight_decay, period, low
        self.layerwise_lr_decay = layerwise_lr_decay
        self.gradual_unfreeze_every = gradual_unfreeze_every
        self.unfrozen: list[tuple[int, str]] = []
        self.start_epoch: int | None = None  # None until training starts (a finished run never starts)

    def on_train_start(self):
        self.start_epoch = self.current_epoch  # > 0 when resumed from a checkpoint

    def _step(self, batch):
        g, _lat, _state, labels = batch
        y = labels.reshape(-1).to(torch.float32)
        out = self.model.forward_normalized(g)
        mean, std = self.model.data_mean[0], self.model.data_std[0]
        pred = out[:, 0]
        target = (y - mean) / std
        if self.model.predict_log_sigma:
            log_sigma = out[:, self.model.ntargets]
            loss = (np.sqrt(2.0) * (pred - target).abs() * torch.exp(-log_sigma) + log_sigma).mean()
        else:
            loss = self.point_loss(pred, target)
        mae = ((pred * std + mean) - y).abs().mean()
        return loss, mae, len(y)

    def training_step(self, batch, batch_idx):
        loss, mae, n = self._step(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("train_mae", mae, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, mae, n = self._step(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("val_mae", mae, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)

    def on_train_epoch_start(self):
        every = self.gradual_unfreeze_every
        if every and self.current_epoch > 0 and self.current_epoch % every == 0:
            name = unfreeze_next(self.model)
            if name:
                self.unfrozen.append((self.current_epoch, name))
        keep_frozen_in_eval(self.model)

    def configure_optimizers(self):
        if self.layerwise_lr_decay:
            groups = layerwise_param_groups(self.model, self.lr, self.layerwise_lr_decay)
        else:
            groups = [{"params": list(self.model.parameters()), "lr": self.lr}]
        if not self.gradual_unfreeze_every:  # frozen parameters never need optimiser state
            for group in groups:
                group["params"] = [p for p in group["params"] if p.requires_grad]
            groups = [grp for grp in groups if grp["params"]]
        optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: triangular_multiplier(epoch, self.period, self.low)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


class _BestWeights(pl.Callback):
    """Keep the weights of the epoch with the lowest validation MAE, as a weights-only file."""

    def __init__(self, path: Path):
        self.path = path
        self.best = float("inf")
        self.best_epoch = -1

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        mae = float(trainer.callback_metrics["val_mae"])
        if mae < self.best:
            self.best, self.best_epoch = mae, trainer.current_epoch
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            os.close(fd)
            torch.save(module.model.state_dict(), tmp)
            os.chmod(tmp, file_mode())
            os.replace(tmp, self.path)
            (self.path.parent / "best.json").write_text(json.dumps({"val_mae": mae, "epoch": self.best_epoch}))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class _WeightAverage(pl.Callback):
    """Running mean of the weights at the end of each epoch from ``first_epoch`` on (weight averaging).

    Averaging the end-of-epoch weights of a run's last epochs smooths the noise of single-epoch weights
    that a small batch and a few epochs leave (Izmailov et al. 2018, stochastic weight averaging; CGAT
    has no batch-norm statistics to re-estimate). The running mean is part of the callback's state, so
    it is saved in ``last.ckpt`` and an interrupted run resumes with exactly the epochs it had.
    """

    def __init__(self, first_epoch: int):
        self.first_epoch = first_epoch
        self.mean: dict[str, torch.Tensor] | None = None
        self.epochs: list[int] = []

    # With validation, ModelCheckpoint saves last.ckpt in on_validation_end, before on_train_epoch_end:
    # adding the epoch there too (once) keeps the checkpoint's mean up to date with its epoch.
    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self._add(trainer, module)

    def on_train_epoch_end(self, trainer, module):
        self._add(trainer, module)

    def _add(self, trainer, module):
        epoch = trainer.current_epoch
        if epoch < self.first_epoch or epoch in self.epochs:
            return
        weights = {k: v.detach().clone().float() for k, v in module.model.state_dict().items()
                   if v.is_floating_point()}
        if self.mean is None:
            self.mean = weights
        else:
            n = len(self.epochs)
            for k, v in weights.items():
                self.mean[k].mul_(n / (n + 1)).add_(v, alpha=1.0 / (n + 1))
        self.epochs.append(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"first_epoch": self.first_epoch, "mean": self.mean, "epochs": list(self.epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["first_epoch"] != self.first_epoch:
            raise ValueError(f"the checkpoint averages weights from epoch {state['first_epoch']}, this call from "
                             f"epoch {self.first_epoch}: resume with the same epochs and average_last, or use a "
                             "new out_dir")
        self.mean, self.epochs = state["mean"], list(state["epochs"])


@torch.no_grad()
def _mean_abs_error(module: CGATLightning, loader) -> float:
    """MAE of ``module.model`` over ``loader`` in the target's units (the validation metric, outside Lightning)."""
    mode = module.model.training
    module.model.eval()
    total, count = 0.0, 0
    for batch in loader:
        _loss, mae, n = module._step(batch)
        total, count = total + float(mae) * n, count + n
    module.model.train(mode)
    return total / count


def _as_dataset(data, model, progress: bool):
    """Datasets pass through; a ``(structures, labels)`` tuple is converted with the model's converter."""
    if not isinstance(data, tuple):
        return data
    from matgl_cgat.data import load_dataset

    structures, labels = data
    return load_dataset(list(structures), "y", labels=list(labels), converter=model.graph_converter(),
                        progress=progress)


class _EpochLog(pl.Callback):
    """``metrics.csv``: one row per epoch (epoch, lr, train_mae, val_mae), kept across resumed runs."""

    FIELDS = ("epoch", "lr", "train_loss", "train_mae", "val_loss", "val_mae")

    def __init__(self, path: Path):
        self.path = path

    def _rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _write(self, rows: list[dict]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.chmod(tmp, file_mode())
        os.replace(tmp, self.path)

    def on_train_start(self, trainer, module):
        # a resumed run restarts at trainer.current_epoch (restored by now): drop rows of epochs it will redo
        self._write([r for r in self._rows() if int(r["epoch"]) < trainer.current_epoch])

    def on_train_epoch_start(self, trainer, module):
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # the scheduler steps before epoch end hooks

    def on_train_epoch_end(self, trainer, module):
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "lr": self._lr}
        for key in self.FIELDS[2:]:
            row[key] = float(metrics[key]) if key in metrics else ""
        self._write([*self._rows(), row])


def _train_labels(ds) -> np.ndarray:
    if hasattr(ds, "labels") and hasattr(ds, "target"):  # GraphDataset: no graph loading needed
        return np.asarray(ds.labels[ds.target], dtype=float)
    return np.array([float(next(iter(ds[i][3].values()))) for i in range(len(ds))])


def finetune(
    model,
    train,
    val=None,
    *,
    policy: str = "full",
    renormalize: bool = True,
    epochs: int = DEFAULTS["epochs"],
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    batch_size: int = DEFAULTS["batch_size"],
    period: int = DEFAULTS["period"],
    loss: str = DEFAULTS["loss"],
    huber_delta: float = DEFAULTS["huber_delta"],
    output_min: float | None | str = "auto",
    layerwise_lr_decay: float | None = None,
    gradual_unfreeze_every: int | None = None,
    average_last: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    seed: int = 0,
    progress: bool = True,
    num_workers: int = 0,
):
    """Fine-tune a copy of ``model`` on new data; the source model is left untouched.

    Args:
        model: a trained CGAT (e.g. ``matgl.load_model("CGAT-PBE-BandGap")``).
        train, val: datasets from :func:`matgl_cgat.data.load_dataset` (or any dataset of MatGL
            ``(graph, lattice, state, labels)`` items), or ``(structures, labels)`` tuples. With
            ``val`` the weights of the epoch with the lowest validation MAE are returned; without it,
            those of the last epoch (with ``average_last``, the averaged weights either way).
        policy: freeze policy (see :mod:`matgl_cgat.transfer`); ``"full"`` trains everything.
        renormalize: re-fit the target mean/std on ``train`` (True, default: right when the new
            property's scale differs, e.g. PBE -> HSE gaps) or keep the source model's (False, what the
            reference did silently).
        epochs, lr, weight_decay, batch_size, period: see :data:`DEFAULTS`.
        loss: ``"l1"`` (default, the reference's), ``"huber"`` (``huber_delta`` in units of the target
            std) or ``"mse"``, all on normalised targets. With ``predict_log_sigma`` models the robust
            L1 is always used. Validation MAE picks the best epoch whatever the loss.
        output_min: lower bound of the returned model's predictions (see ``CGAT(output_min=...)``);
            ``"auto"`` keeps the source model's bound only if every training label respects it (a
            hull-distance model fine-tuned on formation energies loses its bound at 0, with a warning).
        layerwise_lr_decay: if set (e.g. 0.5), block ``d`` levels below the head trains at
            ``lr * decay**d``.
        gradual_unfreeze_every: if set, unfreeze the next frozen block (from the top) every this many
            epochs.
        average_last: if set (N), return the mean of the weights at the end of the last N epochs
            instead of the best epoch's (weight averaging; helps when single epochs are noisy, e.g.
            a few epochs with a piled-up target). The record keeps the averaged weights' validation MAE
            next to the best single epoch's.
        out_dir: run folder (checkpoints, ``metrics.csv``, ``best_model.pt``); default: a temporary one.
        resume: continue from ``out_dir/checkpoints/last.ckpt`` when it exists.
        seed: seeds Python, numpy and torch (and the data-loader shuffling).
        progress: progress bar.

    Returns:
        The fine-tuned copy, with the best validation weights and a ``finetune`` record in ``metadata``.
    """
    from dgl.dataloading import GraphDataLoader
    from matgl.graph.data import collate_fn_graph

    _point_loss(loss, huber_delta)  # an unknown name fails here, before any data is touched
    if average_last is not None and not 1 <= average_last <= epochs:
        raise ValueError(f"average_last={average_last}: must be between 1 and epochs ({epochs})")
    pl.seed_everything(seed, workers=True)
    tuned = copy.deepcopy(model)
    train_ds = _as_dataset(train, tuned, progress)
    val_ds = _as_dataset(val, tuned, progress)
    y = None
    if output_min == "auto":
        bound = getattr(tuned, "output_min", None)
        if bound is not None and np.nanmin(y := _train_labels(train_ds)) < bound:
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
        y = _train_labels(train_ds) if y is None else y
        tuned.set_normalization(float(y.mean()), float(y.std()) or 1.0)
    tuned.train()  # Lightning keeps the mode it is given; the policy then puts frozen blocks in eval
    report = apply_policy(tuned, policy)

    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cgat_finetune_")
        out_dir = tmp.name
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    train_loader = GraphDataLoader(train_ds, batch_size=batch_size, shuffle=True, collate_fn=collate_fn_graph,
                                   generator=generator, num_workers=num_workers)
    val_loader = (GraphDataLoader(val_ds, batch_size=batch_size, shuffle=False, collate_fn=collate_fn_graph,
                                  num_workers=num_workers) if val_ds is not None else None)
    module = CGATLightning(tuned, lr, weight_decay, period, DEFAULTS["low"], layerwise_lr_decay,
                           gradual_unfreeze_every, loss, huber_delta)
    best = _BestWeights(out_dir / "best_model.pt")
    last = pl.pytorch.callbacks.ModelCheckpoint(dirpath=out_dir / "checkpoints", save_last=True, save_top_k=0)
    averager = _WeightAverage(epochs - average_last) if average_last else None
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
        # the averager's hooks run before the checkpoint's, so last.ckpt holds the mean including that epoch
        callbacks=[best, *([averager] if averager else []), last, _EpochLog(out_dir / "metrics.csv")],
        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=1.0 if val_loader is not None else 0, deterministic=False,
    )
    ckpt = out_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt) if resume and ckpt.is_file() else None)
    averaged = None
    if averager is None:
        if val_loader is not None and (out_dir / "best_model.pt").is_file():
            tuned.load_state_dict(torch.load(out_dir / "best_model.pt", map_location="cpu", weights_only=True))
    else:  # the averaged weights replace the best epoch's, which need not be read
        if averager.mean is None:
            raise RuntimeError(f"{out_dir}: no epoch was averaged (the checkpoint predates average_last?)")
        if len(averager.epochs) < average_last:
            warnings.warn(f"{out_dir}: averaged only epochs {averager.epochs}, not the last {average_last}: the run "
                          "resumed from a checkpoint written without average_last", stacklevel=2)
        tuned.load_state_dict({**tuned.state_dict(), **averager.mean})
        averaged = {"epochs": list(averager.epochs),
                    "val_mae": _mean_abs_error(module, val_loader) if val_loader is not None else None}
    for p in tuned.parameters():
        p.requires_grad_(True)
    tuned._frozen_modules = []
    tuned.eval()
    record = {
        "parent": getattr(model, "metadata", None) or {},
        "policy": policy,
        "renormalize": renormalize,
        "trainable_parameters": report.trainable,
        "frozen_parameters": report.frozen,
        "epochs": epochs,
        "lr": lr,
        "period": period,
        "loss": loss if not tuned.predict_log_sigma else "robust_l1",
        **({"huber_delta": huber_delta} if loss == "huber" else {}),
        "best_val_mae": best.best if best.best_epoch >= 0 else None,
        "best_epoch": best.best_epoch,
        "unfrozen": module.unfrozen,
        **({"weight_average": averaged} if averaged else {}),
        # a run already finished in out_dir trains no epoch: it "resumes" at its end
        "resumed_from_epoch": module.start_epoch if module.start_epoch is not None else trainer.current_epoch,
        "seed": seed,
        "output_min": getattr(tuned, "output_min", None),
    }
    tuned.metadata = {**(getattr(model, "metadata", None) or {}), "finetune": record}
    tuned.finetune_report = report
    if tmp is not None:
        tmp.cleanup()
    return tuned
