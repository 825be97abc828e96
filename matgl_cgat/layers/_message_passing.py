"""One CGAT message-passing step: multi-head vector attention, hypernetwork atom update, edge update.

For every directed edge i <- j with state e_ij, ``z = [h_i || e_ij || h_j]``; per head an attention
MLP gives one logit per channel and a message MLP gives the message. Logits are soft-maxed over the
incoming edges of i separately per head and channel ("vector attention"), messages are summed with
those weights and averaged over heads. The atom update is residual through a hypernetwork (HFCNN)
conditioned on the initial embedding (first step) or on a learned mix of it and the aggregate.

Every atom receives exactly ``k`` edges, stored receiver by receiver, so the softmax over incoming
edges and the sum of messages are dense reshapes (:func:`~matgl_cgat.layers.neighbour_softmax_sum`):
the step is plain torch, whichever graph library built the batch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._edge_mlp import edge_mlp
from ._hypernetwork import HyperNetwork
from ._mlp import hidden_width
from ._segment import neighbour_softmax_sum


class EdgePairMLP(nn.Module):
    """``groups`` one-hidden-layer MLPs of ``[h_dst || e || h_src]`` for every edge (see ``edge_mlp``)."""

    def __init__(self, dim: int, edge_dim: int, hidden: int, out_dim: int, groups: int, slope: float):
        super().__init__()
        self.lin_dst = nn.Linear(dim, groups * hidden)
        self.lin_src = nn.Linear(dim, groups * hidden, bias=False)
        self.lin_edge = nn.Linear(edge_dim, groups * hidden, bias=False)
        bound = hidden**-0.5
        self.weight = nn.Parameter(torch.empty(groups, hidden, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(groups, out_dim))
        self.slope = slope

    def forward(self, h, e, src, dst, edge_index, split: int):
        """Returns groups ``[:split]`` and ``[split:]`` as two (E, n, out_dim) tensors.

        ``e`` is a per-state table when ``edge_index`` is given, else one row per edge.
        """
        return edge_mlp(
            self.lin_dst(h),
            self.lin_src(h),
            self.lin_edge(e),
            dst,
            src,
            edge_index,
            self.weight,
            self.bias,
            self.slope,
            split,
        )


class CGATBlock(nn.Module):
    """A message-passing step of CGAT."""

    def __init__(
        self,
        dim: int,
        edge_dim: int,
        heads: int,
        first: bool,
        generator_dims: tuple[int, ...],
        hyper_hidden_dims: tuple[int, ...],
        edge_update: Literal["mlp", "attention"] = "mlp",
        hidden_ratio: float = 1.5,
        slope: float = 0.01,
        update_edges: bool = True,
        recompute_attention: bool = False,
    ):
        """``update_edges=False`` for the last step, whose edge states nothing would read.

        ``recompute_attention=True`` keeps none of the per-edge attention tensors for the backward
        pass and recomputes them instead (activation checkpointing): training memory no longer grows
        with edges x heads x width per step, for about one extra forward pass of the edge MLPs.
        """
        super().__init__()
        self.recompute_attention = recompute_attention
        hidden = hidden_width(2 * dim + edge_dim, hidden_ratio)
        self.heads = heads
        self.attention = EdgePairMLP(dim, edge_dim, hidden, dim, 2 * heads, slope)  # logits and messages
        self.hyper = HyperNetwork(dim, dim, generator_dims, hyper_hidden_dims)
        self.first = first
        self.mix = None if first else nn.Parameter(torch.tensor(0.5))
        if edge_update not in ("mlp", "attention"):
            raise ValueError(f"edge_update must be 'mlp' or 'attention', got {edge_update!r}")
        self.edge_update = edge_update if update_edges else None
        if self.edge_update == "mlp":
            self.edge_mlp = nn.Sequential(
                nn.Linear(edge_dim, edge_dim), nn.LeakyReLU(slope), nn.Linear(edge_dim, edge_dim)
            )
        elif self.edge_update == "attention":
            self.edge_attention = EdgePairMLP(dim, edge_dim, hidden, edge_dim, 2 * heads, slope)

    def _aggregate(self, h, e, src, dst, edge_index) -> torch.Tensor:
        """Vector attention over the incoming edges of every atom, averaged over heads: (N, dim)."""
        logits, messages = self.attention(h, e, src, dst, edge_index, self.heads)
        return neighbour_softmax_sum(logits, messages, src.shape[0] // h.shape[0]).mean(1)

    def forward(
        self,
        src: torch.Tensor,
        dst: torch.Tensor,
        h: torch.Tensor,
        h0: torch.Tensor,
        e: torch.Tensor,
        edge_index: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Update atoms and edges.

        Args:
            src, dst: (E,) int64 sending and receiving atom of every edge, edges grouped by receiver
                with the same number per atom (``dst`` is ``arange(N)`` repeated ``k`` times).
            h: (N, dim) atom states; h0: (N, dim) initial embeddings.
            e: edge states: (R, edge_dim) per rank with ``edge_index`` (E,), or (E, edge_dim) per edge.

        Returns:
            (h, e, edge_index) after the step.
        """
        if self.recompute_attention and torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            agg = checkpoint(self._aggregate, h, e, src, dst, edge_index, use_reentrant=False)
        else:
            agg = self._aggregate(h, e, src, dst, edge_index)
        if self.first:
            cond = h0
        else:
            d = self.mix.clamp(0.0, 1.0)
            cond = d * h0 + (1.0 - d) * agg
        h_new = h + self.hyper(agg, cond)

        if self.edge_update is None:
            return h_new, e, edge_index
        if self.edge_update == "mlp":  # as run: depends on the edge state only, so stays a per-rank table
            return h_new, e + self.edge_mlp(e), edge_index
        gates, updates = self.edge_attention(h_new, e, src, dst, edge_index, self.heads)
        e_edges = e if edge_index is None else e[edge_index]
        return h_new, e_edges + (torch.sigmoid(gates) * updates).mean(1), None
