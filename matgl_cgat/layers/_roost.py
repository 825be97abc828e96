"""Roost composition context (Goodall & Lee, Nat. Commun. 11, 6280, 2020) as CGAT uses it.

Each distinct element of a crystal is a node carrying a learned projection of its Matscholar vector
and its atomic fraction. Weighted-attention message steps run on the fully connected element graph
(attention weights multiplied by fraction^p with a learnable p per head), then a weighted attention
pooling gives one vector per crystal that conditions CGAT's readout. A unary crystal has no element
edges: its message steps leave the element node unchanged instead of failing.
"""

from __future__ import annotations

import torch
from torch import nn

from ._embedding import MATSCHOLAR_DIM
from ._mlp import GroupedMLP
from ._segment import group_index, group_softmax, group_sum


def _weighted_logits(logits: torch.Tensor, fraction: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """``softmax(s + p log w) = w^p exp(s) / sum``: Roost's fraction-weighted attention."""
    return logits + power.view(1, -1, 1) * torch.log(fraction.clamp_min(1e-12)).view(-1, 1, 1)


class RoostMessage(nn.Module):
    """One residual weighted-attention message step on the element graph."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.gate = GroupedMLP(2 * dim, hidden, 1, heads)
        self.message = GroupedMLP(2 * dim, hidden, dim, heads)
        self.power = nn.Parameter(torch.ones(heads))

    def forward(self, src: torch.Tensor, dst: torch.Tensor, h: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
        """Args: (P,) int64 element pairs src -> dst, (M, dim) element states, (M,) fractions."""
        if src.numel() == 0:  # all crystals unary
            return h
        z = torch.cat([h[dst], h[src]], dim=-1)
        logits = _weighted_logits(self.gate(z), fraction[src], self.power)
        alpha = group_softmax(logits, dst, len(h))
        agg = group_sum(alpha * self.message(z), dst, len(h))  # (M, heads, dim), zero for unary crystals
        return h + agg.mean(1)


class RoostContext(nn.Module):
    """Composition -> one context vector per crystal."""

    def __init__(self, dim: int = 128, heads: int = 3, steps: int = 3, hidden: int = 256, pool_heads: int = 3):
        super().__init__()
        self.embed = nn.Linear(MATSCHOLAR_DIM, dim - 1)
        self.steps = nn.ModuleList(RoostMessage(dim, heads, hidden) for _ in range(steps))
        self.pool_gate = GroupedMLP(dim, hidden, 1, pool_heads)
        self.pool_message = GroupedMLP(dim, hidden, dim, pool_heads)
        self.pool_power = nn.Parameter(torch.ones(pool_heads))

    def forward(self, src: torch.Tensor, dst: torch.Tensor, vectors: torch.Tensor, fraction: torch.Tensor,
                num_elements: torch.Tensor):
        """Args: (P,) element pairs src -> dst of the fully connected element graph, (M, 200) Matscholar
        vectors, (M,) fractions, (B,) elements per crystal."""
        h = torch.cat([self.embed(vectors), fraction.unsqueeze(-1)], dim=-1)
        for step in self.steps:
            h = step(src, dst, h, fraction)
        logits = _weighted_logits(self.pool_gate(h), fraction, self.pool_power)
        crystal = group_index(num_elements)
        alpha = group_softmax(logits, crystal, len(num_elements))
        return group_sum(alpha * self.pool_message(h), crystal, len(num_elements)).mean(1)
