"""What a model says about a batch of crystals, from one pass through its network.

A screening table wants, per crystal, the value, its sigma and the metal gate's decision. Asked for
separately (``forward(return_sigma=True)``, then ``metal_decision``) each would run the message
passing again; :meth:`CGAT.answers` computes the pooled representation once and feeds every head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CrystalAnswers:
    """(B, outputs) tensors in target units, never squeezed; heads the model lacks are None.

    ``metal`` is the gate's decision (where it decided "metal", ``value`` already holds the model's
    lower bound, as :meth:`CGAT.predict_from_features` does) and ``metal_probability`` its
    probability. ``sigma`` is already widened for crystals beyond the model's novelty threshold.
    """

    value: torch.Tensor
    sigma: torch.Tensor | None = None
    metal: torch.Tensor | None = None
    metal_probability: torch.Tensor | None = None
    novelty: torch.Tensor | None = None  # (B,): one per crystal, shared by every output

    def beyond(self, threshold: float) -> torch.Tensor | None:
        """(B,) booleans: crystals whose novelty is above ``threshold`` (None without a novelty check)."""
        return None if self.novelty is None else self.novelty > threshold

    def column(self, index: int) -> CrystalAnswers:
        """The answers of one output (a fidelity of a multi-fidelity model), still (B, 1)."""

        def pick(t):
            return None if t is None else t[:, index : index + 1]

        return CrystalAnswers(pick(self.value), pick(self.sigma), pick(self.metal), pick(self.metal_probability),
                              self.novelty)
