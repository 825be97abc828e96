"""CGAT readout (global vector-attention pooling) and residual ReZero output network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._mlp import GroupedMLP, hidden_width
from ._segment import group_index, group_softmax, group_sum


class AttentionReadout(nn.Module):
    """Pool atoms into one vector per crystal.

    Per head, one attention logit per channel from ``[h_i || context]``, softmax over the crystal's
    atoms; the pooled value is the attention-weighted sum of ``MLP(h_i)``. Heads are concatenated.
    """

    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        self.attention = GroupedMLP(dim + context_dim, hidden_width(dim + context_dim), dim, heads)
        self.value = GroupedMLP(dim, hidden_width(dim), dim, heads)
        self.out_dim = heads * dim

    def forward(self, h: torch.Tensor, context: torch.Tensor, num_nodes: torch.Tensor) -> torch.Tensor:
        crystal = group_index(num_nodes)
        alpha = group_softmax(self.attention(torch.cat([h, context.index_select(0, crystal)], dim=-1)), crystal,
                              len(num_nodes))
        return group_sum(alpha * self.value(h), crystal, len(num_nodes)).flatten(1)


class ResidualHead(nn.Module):
    """Residual MLP ``x -> skip(x) + alpha * relu(W x)`` per width step, ReZero alphas starting at 0."""

    def __init__(self, in_dim: int, dims: tuple[int, ...], out_dim: int):
        super().__init__()
        widths = (in_dim, *dims)
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.skips = nn.ModuleList(
            nn.Identity() if a == b else nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:])
        )
        self.alphas = nn.Parameter(torch.zeros(len(dims)))
        self.out = nn.Linear(widths[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j, (fc, skip) in enumerate(zip(self.fcs, self.skips)):
            x = skip(x) + self.alphas[j] * F.relu(fc(x))
        return self.out(x)
