"""Softmax and sums over groups of rows, in plain torch: the operations a graph library would provide.

CGAT needs three kinds of grouping. Atoms receive exactly ``k`` edges each, stored receiver by
receiver, so the softmax over an atom's incoming edges and the sum of its messages are reshapes to
``(atoms, k, ...)``: no index arithmetic at all (:func:`neighbour_softmax_sum`). The readout groups
atoms by crystal and Roost groups element pairs by receiving element; both groups vary in size, so
they are scatter operations on a group index (:func:`group_softmax`, :func:`group_sum`). Keeping
these here lets ``layers/`` and ``models/`` run on tensors from any graph library, on any device.
"""

from __future__ import annotations

import torch


def neighbour_softmax_sum(logits: torch.Tensor, values: torch.Tensor, k: int) -> torch.Tensor:
    """``sum_j softmax_j(logits) * values`` over the ``k`` incoming edges of every receiver.

    Args:
        logits, values: (E, ...) per edge, edges grouped by receiver (``E = receivers * k``).

    Returns:
        (E // k, ...) one row per receiver; the softmax is taken per trailing element (vector attention).
    """
    if logits.shape[0] % k:
        raise ValueError(f"{logits.shape[0]} edges are not {k} per receiving atom")
    shape = (logits.shape[0] // k, k, *logits.shape[1:])
    weights = torch.softmax(logits.reshape(shape).float(), dim=1).to(values.dtype)
    return (weights * values.reshape(shape[:2] + values.shape[1:])).sum(1)


def group_index(sizes: torch.Tensor) -> torch.Tensor:
    """(sum(sizes),) the group of every row for contiguous groups of these sizes."""
    return torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)


def group_softmax(logits: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Softmax of ``logits`` (R, ...) over the rows of each group (``group``: (R,) int64), per element.

    Computed in float32 (the largest logit of each group subtracted first); an empty group is fine.
    """
    x = logits.float()
    expand = group.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    peak = torch.full((num_groups, *x.shape[1:]), float("-inf"), dtype=x.dtype, device=x.device)
    peak = peak.scatter_reduce(0, expand, x, reduce="amax", include_self=True)
    z = torch.exp(x - peak.index_select(0, group))
    total = torch.zeros_like(peak).index_add_(0, group, z)
    return (z / total.index_select(0, group)).to(logits.dtype)


def group_sum(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(num_groups, ...) sums of the rows of ``values`` per group (empty groups: 0)."""
    out = torch.zeros((num_groups, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, group, values)
