"""Memory-lean two-layer MLP on the edges of a graph, for ``z_ij = [h_i || e_ij || h_j]``.

CGAT's attention logits and messages are one-hidden-layer MLPs of the concatenation z. Because the
first layer is linear, ``W z = W_i h_i + W_e e_ij + W_j h_j``: the node terms are computed once per
atom and gathered, and the edge term once per distinct edge state (with the as-run edge update an edge
state depends only on its shell rank, so it is a 24-row table). The hidden activation is the largest
tensor of the model (edges x heads x width). This autograd function never holds it for more than a
chunk of edges: the forward pass keeps only the small inputs, and the backward pass recomputes the
hidden activation chunk by chunk (a gather and an add; no extra matrix products).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Edges processed at once; bounds the transient hidden activation to CHUNK_ELEMENTS floats (64 MB).
#: Measured with glibc's default allocator: chunks well above its 32 MB mmap threshold were returned
#: to the OS when freed; smaller ones fragmented the heap and measured *higher* peak memory (4.0 GB vs
#: 2.0 GB for 1 << 23 vs 1 << 24 on a 2,409-atom batch of the paper preset). Training now keeps freed
#: memory for reuse (``TrainConfig(allocator="keep")``); the paper preset's peak was not re-measured.
CHUNK_ELEMENTS = 1 << 24


def _chunks(num_edges: int, width: int):
    step = max(1, CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, num_edges, step):
        yield slice(start, min(start + step, num_edges))


def _hidden(dst_term, src_term, edge_term, dst, src, edge_index, slope, rows: slice):
    """leaky(dst_term[dst] + src_term[src] + edge_term[edge_index]) for the edges in ``rows``."""
    hidden = dst_term.index_select(0, dst[rows])
    hidden += src_term.index_select(0, src[rows])
    hidden += edge_term[rows] if edge_index is None else edge_term.index_select(0, edge_index[rows])
    return F.leaky_relu_(hidden, slope)


def _forward(dst_term, src_term, edge_term, dst, src, edge_index, weight, bias, slope, split):
    groups, width, channels = weight.shape
    num_edges = dst.shape[0]
    outs = [dst_term.new_empty(num_edges, n, channels) for n in (split, groups - split) if n > 0]
    for rows in _chunks(num_edges, groups * width):
        hidden = _hidden(dst_term, src_term, edge_term, dst, src, edge_index, slope, rows)
        for k in range(groups):
            out, j = (outs[0], k) if k < split else (outs[-1], k - split)
            torch.addmm(bias[k], hidden[:, k * width : (k + 1) * width], weight[k], out=out[rows, j])
    return outs


class _EdgeMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dst_term, src_term, edge_term, dst, src, edge_index, weight, bias, slope, split):
        outs = _forward(dst_term, src_term, edge_term, dst, src, edge_index, weight, bias, slope, split)
        ctx.save_for_backward(dst_term, src_term, edge_term, dst, src, edge_index, weight)
        ctx.slope, ctx.split, ctx.has_index = slope, split, edge_index is not None
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        dst_term, src_term, edge_term, dst, src, edge_index, weight = ctx.saved_tensors
        if not ctx.has_index:
            edge_index = None
        groups, width, channels = weight.shape
        split = ctx.split
        grads = [g if g is not None else None for g in grads]
        num_edges = dst.shape[0]

        def grad_of(k, rows):
            g = grads[0] if k < split else grads[-1]
            j = k if k < split else k - split
            return None if g is None else g[rows, j]

        acc = torch.promote_types(weight.dtype, torch.float32)  # scatter-adds in float32 even under bf16 autocast
        grad_dst = torch.zeros_like(dst_term, dtype=acc)
        grad_src = torch.zeros_like(src_term, dtype=acc)
        grad_edge = torch.zeros_like(edge_term, dtype=acc)
        grad_weight = torch.zeros_like(weight, dtype=acc)
        grad_bias = torch.zeros(groups, channels, dtype=acc, device=weight.device)
        for rows in _chunks(num_edges, groups * width):
            hidden = _hidden(dst_term, src_term, edge_term, dst, src, edge_index, ctx.slope, rows)
            grad_hidden = torch.zeros_like(hidden)
            for k in range(groups):
                g = grad_of(k, rows)
                if g is None:
                    continue
                cols = slice(k * width, (k + 1) * width)
                grad_weight[k] += (hidden[:, cols].t() @ g).to(acc)
                grad_bias[k] += g.sum(0, dtype=acc)
                torch.mm(g, weight[k].t(), out=grad_hidden[:, cols])
            # leaky ReLU backward from its output (sign preserved for slope > 0)
            grad_pre = torch.ops.aten.leaky_relu_backward(grad_hidden, hidden, ctx.slope, True).to(acc)
            del hidden, grad_hidden
            grad_dst.index_add_(0, dst[rows], grad_pre)
            grad_src.index_add_(0, src[rows], grad_pre)
            if edge_index is None:
                grad_edge[rows] = grad_pre
            else:
                grad_edge.index_add_(0, edge_index[rows], grad_pre)
        return (grad_dst.to(dst_term.dtype), grad_src.to(src_term.dtype), grad_edge.to(edge_term.dtype), None, None,
                None, grad_weight.to(weight.dtype), grad_bias.to(weight.dtype), None, None)


def autocast_dtype(t: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast would compute a matrix product of ``t`` in, or None when autocast is off."""
    if t.device.type == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    if t.device.type == "cuda":
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    return None


def run_autocast_aware(function, *args):
    """Call a custom autograd function the way autocast calls a matrix product.

    Under ``torch.autocast`` the floating-point inputs are cast to the autocast dtype (bfloat16 for
    ``precision="bf16-mixed"``) and the function runs with autocast off, so its products see one
    dtype. The casts are ordinary autograd ops: parameters keep float32 gradients. The backward
    passes accumulate their scatter-adds in float32.
    """
    tensors = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
    dtype = autocast_dtype(tensors[0]) if tensors else None
    if dtype is None:
        return function(*args)
    args = tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
    with torch.autocast(tensors[0].device.type, enabled=False):
        return function(*args)


def _records_graph(*tensors: torch.Tensor) -> bool:
    """Whether autograd will record this call (never under ``torch.inference_mode``, e.g. Lightning's test)."""
    return (
        torch.is_grad_enabled()
        and not torch.is_inference_mode_enabled()
        and any(t.requires_grad for t in tensors)
    )


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
    split: int | None = None,
) -> tuple[torch.Tensor, ...]:
    """``out[e, g] = leaky(dst_term[dst[e]] + src_term[src[e]] + edge_term[edge_index[e]]) @ weight[g] + bias[g]``.

    Args:
        dst_term, src_term: (N, G*K) first-layer terms of the receiving and sending atoms.
        edge_term: (R, G*K) first-layer term of each distinct edge state, or (E, G*K) per edge when
            ``edge_index`` is None.
        dst, src: (E,) int64 edge end points.
        edge_index: (E,) int64 row of ``edge_term`` for each edge, or None.
        weight: (G, K, C) second-layer weights, one block per group (head).
        bias: (G, C).
        slope: leaky-ReLU negative slope (must be > 0).
        split: return groups ``[:split]`` and ``[split:]`` as two contiguous tensors (e.g. attention
            logits and messages); default: one tensor with all groups.

    Returns:
        A tuple of one (E, G, C) tensor, or of (E, split, C) and (E, G - split, C) tensors.
    """
    if slope <= 0:
        raise ValueError("edge_mlp recomputes the activation mask from its output and needs slope > 0")
    split = weight.shape[0] if split is None else split
    if _records_graph(dst_term, src_term, edge_term, weight, bias):
        return run_autocast_aware(_EdgeMLP.apply, dst_term, src_term, edge_term, dst, src, edge_index, weight, bias,
                                  slope, split)
    return tuple(run_autocast_aware(_forward, dst_term, src_term, edge_term, dst, src, edge_index, weight, bias,
                                    slope, split))
