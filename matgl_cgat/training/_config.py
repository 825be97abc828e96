"""``TrainConfig``: every training default, once, and the named recipes built from it.

The defaults are the CPU settings this package's shipped models were trained with (a peak learning
rate of 1e-3 with batch 64 and one triangular cycle over the run). The paper's GPU settings differ
mainly in the learning rate (1.25e-4) and in running for hundreds of epochs; they are the
``paper-scratch`` and ``paper-transfer`` recipes. What each recipe is for and what it was measured
to do is in its entry of :data:`RECIPES`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ._compile import COMPILE_CHOICES

LOSSES = ("l1", "huber", "mse")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


@dataclass(frozen=True)
class TrainConfig:
    """How a model trains. Every field has one default, here.

    Attributes:
        epochs: epochs to train.
        lr: peak learning rate of the triangular cycle (AdamW).
        weight_decay: AdamW weight decay (the reference's 1e-6).
        batch_size: structures per batch and per process.
        period: epochs per triangular learning-rate cycle (``low`` -> 1 -> ``low`` times ``lr``);
            None: one cycle over the whole run (``epochs``).
        low: learning-rate multiplier at the start and end of a cycle (the reference's 0.1).
        loss: ``"l1"`` (the reference's), ``"huber"`` or ``"mse"``, on targets normalised by the
            model's stored mean and std. Huber/MSE keep a gradient proportional to the error, which a
            target piled up at one value (hull distances: half are 0) needs; L1 settles on its median.
        huber_delta: Huber threshold in units of the target std.
        target_weights: per-target loss weights of a multi-target model (default: equal).
        average_last: return the mean of the weights at the end of the last N epochs instead of the
            best validation epoch's (weight averaging, ``torch.optim.swa_utils.AveragedModel``).
        layerwise_lr_decay: block ``d`` levels below the head trains at ``lr * decay**d``.
        gradual_unfreeze_every: unfreeze one more frozen block, from the top, every this many epochs.
        seed: seeds Python, numpy, torch and the per-epoch shuffling (which depends on the seed and the
            epoch only, so a resumed run sees the same batches as an uninterrupted one).
        accelerator, devices, num_nodes, strategy, precision: passed to ``lightning.Trainer``
            (``precision="bf16-mixed"`` for bfloat16 autocast; ``strategy="ddp"`` with ``devices=N``
            for N processes).
        num_workers: data-loader worker processes per training process.
        allocator: ``"keep"`` (default): glibc serves every block from the heap and keeps freed
            memory for reuse, 1.6-1.8x faster CPU training (see ``_allocator.py``); ``"system"``:
            leave the C library's settings alone.
        metal_weight: weight of a metal-versus-non-metal cross-entropy on the model's metal gate
            (``CGAT.metal_head``), trained with the regression through the whole network; 0 (default)
            trains the regression alone. A gate fitted afterwards on a frozen network can only
            re-draw the line the regression's representation already has (docs/results.md 10.2);
            trained jointly, the representation itself learns to separate metals.
        metal_below: a label below this (target units) is a metal for that cross-entropy.
        metal_regression: with ``metal_weight > 0``, ``"all"`` (default) fits the regression to every
            label; ``"non-metals"`` fits it to labels at or above ``metal_below`` only (a hurdle model:
            the gate says whether, a regression that never learnt to hedge towards 0 says how much).
            The logged MAE is then the non-metals' MAE.
        compile: ``torch.compile`` of the model core for this run (outputs equal to 4e-9; eager again
            afterwards): ``"auto"`` (default) compiles the representation for a CPU run of at least
            ``AUTO_MIN_PASSES`` structure passes on torch 2.13 or newer, where it was measured
            1.12-1.30x faster (see ``_compile.py``), and nowhere else; ``"off"``; ``"represent"`` or ``"blocks"``
            to force it.
        progress: progress bar.
    """

    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 64
    period: int | None = None
    low: float = 0.1
    loss: str = "l1"
    huber_delta: float = 1.0
    target_weights: tuple[float, ...] | None = None
    average_last: int | None = None
    layerwise_lr_decay: float | None = None
    gradual_unfreeze_every: int | None = None
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = 0
    allocator: str = "keep"
    metal_weight: float = 0.0
    metal_below: float = 0.1
    metal_regression: str = "all"
    compile: str = field(default="auto", compare=False)
    progress: bool = field(default=True, compare=False)

    def __post_init__(self):
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.period is not None and self.period < 1:
            raise ValueError(f"period must be >= 1 epoch, got {self.period}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.average_last is not None and not 1 <= self.average_last <= max(self.epochs, 1):
            raise ValueError(f"average_last={self.average_last}: must be between 1 and epochs ({self.epochs})")
        if str(self.precision) not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.allocator not in ("keep", "system"):
            raise ValueError(f"allocator must be 'keep' or 'system', got {self.allocator!r}")
        if not self.metal_weight >= 0:
            raise ValueError(f"metal_weight must be >= 0, got {self.metal_weight}")
        if self.metal_regression not in ("all", "non-metals"):
            raise ValueError(f"metal_regression must be 'all' or 'non-metals', got {self.metal_regression!r}")
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {self.compile!r}")
        if self.target_weights is not None:
            object.__setattr__(self, "target_weights", tuple(float(w) for w in self.target_weights))

    @property
    def cycle(self) -> int:
        """Epochs per learning-rate cycle."""
        return self.period or max(self.epochs, 1)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (unknown names raise ``TypeError`` naming them)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown training setting(s) {unknown}; TrainConfig has "
                            f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for run folders and model cards)."""
        out = dataclasses.asdict(self)
        if not self.metal_weight:  # no gate trained: run folders and cards written before these fields match
            for name in ("metal_weight", "metal_below", "metal_regression"):
                out.pop(name)
        if out["target_weights"] is not None:
            out["target_weights"] = list(out["target_weights"])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return cls(**values)


#: Named recipes: ``recipe(name, **changes)``. Measured effects: benchmarks/RESULTS.md.
RECIPES: dict[str, tuple[TrainConfig, str]] = {
    "cpu": (
        TrainConfig(),
        "From scratch on a CPU budget (the shipped PBE models): peak lr 1e-3, one cycle over the run. "
        "With a few epochs a ten times higher peak than the paper's trains much faster at batch 64.",
    ),
    "cpu-transfer": (
        TrainConfig(lr=3e-4, epochs=10),
        "Fine-tuning on a CPU budget: peak lr 3e-4, 10 epochs, one cycle (the cross-functional HSE, "
        "GLLB-SC and SCAN studies; a third of the from-scratch rate keeps the parent's features).",
    ),
    "cpu-finetune": (
        TrainConfig(lr=3e-4, epochs=20),
        "Fine-tuning a shipped model on a few hundred to a few thousand labels, as the README measured it: "
        "peak lr 3e-4, 20 epochs, one cycle (CGAT-Exp-Eform, CGAT-r2SCAN-Eform and the Delta-models); "
        "mgl-cgat finetune's default.",
    ),
    "paper-scratch": (
        TrainConfig(lr=1.25e-4, epochs=390, period=130),
        "The reference's from-scratch runs on GPUs: lr 1.25e-4, 390 epochs in three 130-epoch cycles.",
    ),
    "paper-transfer": (
        TrainConfig(lr=1.25e-4, epochs=140, period=70),
        "The reference's transfer-learning runs: lr 1.25e-4, two 70-epoch cycles.",
    ),
}


def recipe(name: str, **changes: Any) -> TrainConfig:
    """A named recipe, optionally with some fields changed."""
    try:
        config = RECIPES[name][0]
    except KeyError:
        raise ValueError(f"unknown training recipe {name!r}; choose from {sorted(RECIPES)}") from None
    return config.replace(**changes) if changes else config
