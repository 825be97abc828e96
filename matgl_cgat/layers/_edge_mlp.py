"""Memory-lean two-layer MLP on the edges of a graph, for ``z_ij = [h_i || e_ij || h_j]``.

CGAT's attention logits and messages are one-hidden-layer MLPs of the concatenation z. Because the
first layer is linear, ``W z = W_i h_i + W_e e_ij + W_j h_j``: the node terms are computed once per
atom and gathered, and the edge term once per distinct edge state (with the as-run edge update an edge
state depends only on its shell rank, so it is a 25-row table). The hidden activation is the largest
tensor of the model (edges x heads x width); this autograd function does not keep it for the backward
pass but recomputes it from the small inputs (a gather and an add), which cuts the activation memory of
training by about half at the cost of no extra matrix products.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _EdgeMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dst_term, src_term, edge_term, dst, src, edge_index, weight, bias, slope):
        hidden = _hidden(dst_term, src_term, edge_term, dst, src, edge_index, slope)
        out = _grouped_matmul(hidden, weight) + bias
        ctx.save_for_backward(dst_term, src_term, edge_term, dst, src, edge_index, weight)
        ctx.slope = slope
        ctx.has_index = edge_index is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        dst_term, src_term, edge_term, dst, src, edge_index, weight = ctx.saved_tensors
        if not ctx.has_index:
            edge_index = None
        slope = ctx.slope
        pre = dst_term.index_select(0, dst) + src_term.index_select(0, src)
        pre += edge_term if edge_index is None else edge_term.index_select(0, edge_index)
        groups, width, _ = weight.shape
        num_edges = pre.shape[0]
        grad_out = grad_out.contiguous()
        hidden = F.leaky_relu(pre, slope)
        grad_weight = torch.bmm(hidden.view(num_edges, groups, width).transpose(0, 1).transpose(1, 2),
                                grad_out.transpose(0, 1))
        del hidden
        grad_bias = grad_out.sum(0)
        grad_pre = torch.empty_like(pre)
        for k in range(groups):
            torch.mm(grad_out[:, k], weight[k].t(), out=grad_pre[:, k * width : (k + 1) * width])
        grad_pre.mul_(torch.where(pre > 0, 1.0, slope))
        del pre
        grad_dst = torch.zeros_like(dst_term).index_add_(0, dst, grad_pre)
        grad_src = torch.zeros_like(src_term).index_add_(0, src, grad_pre)
        grad_edge = grad_pre if edge_index is None else torch.zeros_like(edge_term).index_add_(0, edge_index, grad_pre)
        return grad_dst, grad_src, grad_edge, None, None, None, grad_weight, grad_bias, None


def _hidden(dst_term, src_term, edge_term, dst, src, edge_index, slope):
    pre = dst_term.index_select(0, dst) + src_term.index_select(0, src)
    pre += edge_term if edge_index is None else edge_term.index_select(0, edge_index)
    return F.leaky_relu_(pre, slope)


def _grouped_matmul(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(E, G*K) x (G, K, C) -> (E, G, C): one GEMM per group on strided slices, no copies."""
    groups, width, channels = weight.shape
    out = hidden.new_empty(hidden.shape[0], groups, channels)
    for k in range(groups):
        torch.mm(hidden[:, k * width : (k + 1) * width], weight[k], out=out[:, k])
    return out


def edge_mlp(
    dst_term: torch.Tensor,
    src_term: torch.Tensor,
    edge_term: torch.Tensor,
    dst: torch.Tensor,
    src: torch.Tensor,
    edge_index: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    slope: float = 0.01,
) -> torch.Tensor:
    """``out[e, g] = leaky(dst_term[dst[e]] + src_term[src[e]] + edge_term[edge_index[e]]) @ weight[g] + bias[g]``.

    Args:
        dst_term, src_term: (N, G*K) first-layer terms of the receiving and sending atoms.
        edge_term: (R, G*K) first-layer term of each distinct edge state, or (E, G*K) per edge when
            ``edge_index`` is None.
        dst, src: (E,) int64 edge end points.
        edge_index: (E,) int64 row of ``edge_term`` for each edge, or None.
        weight: (G, K, C) second-layer weights, one block per group (head).
        bias: (G, C).
        slope: leaky-ReLU negative slope.

    Returns:
        (E, G, C) tensor.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (dst_term, src_term, edge_term, weight, bias)):
        return _EdgeMLP.apply(dst_term, src_term, edge_term, dst, src, edge_index, weight, bias, slope)
    return _grouped_matmul(_hidden(dst_term, src_term, edge_term, dst, src, edge_index, slope), weight) + bias
