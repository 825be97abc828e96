"""Callbacks the trainer adds: weight averaging, gradual unfreezing, frozen blocks kept in eval mode.

Best weights, the last checkpoint, the per-epoch CSV and the learning rate come from Lightning's own
``ModelCheckpoint``, ``CSVLogger`` and ``LearningRateMonitor`` (see ``_fit.py``).
"""

from __future__ import annotations

from typing import Any

import lightning as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.optim.swa_utils import AveragedModel


class WeightAveraging(pl.Callback):
    """Mean of the weights at the end of each epoch from ``first_epoch`` on (``AveragedModel``).

    Averaging the end-of-epoch weights of a run's last epochs smooths the noise single epochs have
    after a few epochs at a small batch (Izmailov et al. 2018; CGAT has no batch-norm statistics to
    re-estimate). The running mean and its count are part of the callback's state, so ``last.ckpt``
    holds them and a resumed run averages exactly the epochs an uninterrupted one would.
    """

    def __init__(self, first_epoch: int):
        self.first_epoch = first_epoch
        self.averaged: AveragedModel | None = None
        self.epochs: list[int] = []

    # ModelCheckpoint saves last.ckpt in on_train_epoch_end or (depending on the validation settings) in
    # on_validation_end; this callback runs before it in both hooks and adds each epoch once.
    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self._add(trainer, module)

    def on_train_epoch_end(self, trainer, module):
        self._add(trainer, module)

    def _add(self, trainer, module):
        epoch = trainer.current_epoch
        if epoch < self.first_epoch or epoch in self.epochs:
            return
        self.restore(module.model)
        if self.averaged is None:
            self.averaged = AveragedModel(module.model)
        self.averaged.update_parameters(module.model)
        self.epochs.append(epoch)

    def averaged_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``model``'s state dict with the averaged parameters in place of its own."""
        self.restore(model)
        if self.averaged is None:
            raise RuntimeError("no epoch was averaged")
        state = dict(model.state_dict())
        for name, value in self.averaged.module.named_parameters():
            state[name] = value.detach().clone()
        return state

    def state_dict(self) -> dict[str, Any]:
        mean = None if self.averaged is None else {k: v for k, v in self.averaged.state_dict().items()}
        return {"first_epoch": self.first_epoch, "mean": mean, "epochs": list(self.epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["first_epoch"] != self.first_epoch:
            raise ValueError(f"the checkpoint averages weights from epoch {state['first_epoch']}, this run from "
                             f"epoch {self.first_epoch}")
        self.epochs = list(state["epochs"])
        self._pending = state["mean"]

    def restore(self, model: torch.nn.Module) -> None:
        """Rebuild the running mean from a checkpoint's state, when one was loaded (lazily: strategies
        restore callback states at different points of ``fit``)."""
        pending = getattr(self, "_pending", None)
        if pending is not None:
            self.averaged = AveragedModel(model)
            self.averaged.load_state_dict(pending)
            self._pending = None


class GradualUnfreezing(pl.Callback):
    """Unfreeze one more block, from the top, every ``every`` epochs.

    Which blocks are trainable at epoch k follows from k alone, so a resumed run is in the same
    state as an uninterrupted one without storing anything. Frozen parameters are in the optimiser
    from the start (AdamW skips a parameter while its gradient is None), so each block keeps its own
    learning-rate group and the cyclic schedule stays one schedule; Lightning's ``BaseFinetuning``
    instead adds parameter groups as it goes, which the per-group cyclic schedule cannot follow.
    """

    def __init__(self, every: int, unfreeze_next):
        self.every = every
        self.unfreeze_next = unfreeze_next
        self.unfrozen: list[tuple[int, str]] = []

    def on_train_epoch_start(self, trainer, module):
        due = trainer.current_epoch // self.every
        while len(self.unfrozen) < due:
            name = self.unfreeze_next(module.model)
            if name is None:
                break
            self.unfrozen.append((self.every * (len(self.unfrozen) + 1), name))


class KeepFrozenInEval(pl.Callback):
    """Frozen blocks stay in eval mode when Lightning puts the model in training mode."""

    def on_train_epoch_start(self, trainer, module):
        for m in getattr(module.model, "_frozen_modules", []):
            m.eval()


class StopFile(pl.Callback):
    """End the run gracefully at the end of the epoch during which ``path`` appears (``touch RUN/STOP``).

    The run then returns its best weights and writes its files as if it had finished, and its
    checkpoint is that of a finished epoch, so the same call later resumes it (the file is removed
    when a run starts). What a long CPU run needs when the machine must be handed back.
    """

    def __init__(self, path):
        from pathlib import Path

        self.path = Path(path)
        self.stopped_at: int | None = None

    def on_fit_start(self, trainer, module):
        if trainer.is_global_zero:
            self.path.unlink(missing_ok=True)

    def on_train_epoch_end(self, trainer, module):
        flag = torch.tensor(float(self.path.exists()), device=module.device)
        if trainer.world_size > 1:
            flag = trainer.strategy.reduce(flag, reduce_op="sum")
        if float(flag) > 0:
            trainer.should_stop = True
            self.stopped_at = trainer.current_epoch



class EpochErrorsBar(TQDMProgressBar):
    """Lightning's progress bar showing what a user watches a run for: the last finished epoch's train
    and validation MAE in the target's units (``train MAE 0.051 eV/atom``), not the logger's version
    number (``v_num``) or raw metric keys."""

    def __init__(self, units: str = ""):
        super().__init__()
        self.units = units

    def get_metrics(self, trainer, pl_module) -> dict:
        shown = {}
        unit = f" {self.units}" if self.units else ""
        for key, label in (("train_mae", "train MAE"), ("val_mae", "val MAE")):
            value = trainer.callback_metrics.get(key)
            if value is not None:
                shown[label] = f"{float(value):.4g}{unit}"
        return shown
