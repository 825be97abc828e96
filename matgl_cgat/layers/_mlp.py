"""Small building blocks shared by CGAT's layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hidden_width(in_dim: int, ratio: float = 1.5) -> int:
    """Hidden width of CGAT's one-hidden-layer MLPs: input width / 1.5, as the reference ran."""
    return max(1, round(in_dim / ratio))


class GroupedMLP(nn.Module):
    """``G`` independent one-hidden-layer MLPs (one per attention head) evaluated as one batch.

    ``(n, in) -> (n, G, out)``: a single GEMM for all first layers, a batched GEMM for the second.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, groups: int, slope: float = 0.01):
        super().__init__()
        self.first = nn.Linear(in_dim, groups * hidden)
        self.weight = nn.Parameter(torch.empty(groups, hidden, out_dim))
        self.bias = nn.Parameter(torch.zeros(groups, out_dim))
        bound = hidden**-0.5
        nn.init.uniform_(self.weight, -bound, bound)
        self.groups, self.hidden, self.slope = groups, hidden, slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.first(x), self.slope).view(-1, self.groups, self.hidden)
        return (torch.einsum("ngk,gkc->ngc", h, self.weight) + self.bias).contiguous()
