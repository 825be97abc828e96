"""Fidelity conditioning: one learned scale and shift of the crystal representation per functional.

A multi-fidelity CGAT predicts the same property (a band gap) as PBE, HSE, GLLB-SC or SCAN would
give it. Structure determines most of the answer, and the functionals differ in systematic ways
(PBE underestimates gaps, more for some chemistries than for others). So all fidelities share the
message passing, the readout and the output network, and each fidelity only re-weights the pooled
representation before the output network, FiLM style: ``h_f = h * (1 + gamma_f) + beta_f``. That is
the readout-level version of MEGNet's multi-fidelity state input: cheap (two vectors per fidelity),
and a new fidelity can be learned from a few hundred labels by training its two vectors alone, which
leaves every other fidelity's predictions exactly as they were.

Zero-initialised, a new fidelity starts as a copy of the shared prediction.
"""

from __future__ import annotations

import torch
from torch import nn


class FidelityFiLM(nn.Module):
    """``h -> h * (1 + gamma) + beta`` for one fidelity; ``gamma = beta = 0`` at start."""

    def __init__(self, dim: int):
        super().__init__()
        self.film = nn.Parameter(torch.zeros(2, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1.0 + self.film[0]) + self.film[1]


def condition_on_fidelities(h: torch.Tensor, films: nn.ModuleList) -> torch.Tensor:
    """``(B, D)`` representations -> ``(B, F, D)``, one conditioned copy per fidelity."""
    return torch.stack([film(h) for film in films], dim=1)
