"""Hypernetwork atom update (HFCNN) of CGAT.

A generator MLP maps a per-atom conditioning vector to the weights and biases of a small per-atom
network that transforms the aggregated message. If the generator's last hidden activation is ``c``
(width Kc), a generated layer is ``y = (A c + a) x + (B c + b)`` with ``A`` of shape (out, in, Kc):
the generator's output layer *is* a bilinear form in ``(x, c)``. It is computed here without ever
materialising the per-atom weight matrices: ``y = (x outer c) @ A.T`` with the outer product rebuilt,
not stored, in the backward pass (see :class:`_Bilinear`), which keeps the training memory of a
44 M-parameter hypernetwork to a few vectors per atom. The generator's output layer starts small
(x0.1), as in the reference, so that the residual update starts near zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._edge_mlp import _records_graph, run_autocast_aware


class _Bilinear(torch.autograd.Function):
    """``y[n, o] = sum_{i,k} W[o, i*K + k] x[n, i] c[n, k]``, storing only x, c and W."""

    @staticmethod
    def forward(ctx, x, c, weight):
        outer = (x.unsqueeze(2) * c.unsqueeze(1)).flatten(1)
        ctx.save_for_backward(x, c, weight)
        return outer @ weight.t()

    @staticmethod
    def backward(ctx, grad_y):
        x, c, weight = ctx.saved_tensors
        n, i, k = x.shape[0], x.shape[1], c.shape[1]
        outer = (x.unsqueeze(2) * c.unsqueeze(1)).flatten(1)
        grad_w = grad_y.t() @ outer
        del outer
        grad_outer = (grad_y @ weight).view(n, i, k)
        grad_x = torch.bmm(grad_outer, c.unsqueeze(2)).squeeze(2)
        grad_c = torch.bmm(x.unsqueeze(1), grad_outer).squeeze(1)
        return grad_x, grad_c, grad_w


def _bilinear(x: torch.Tensor, c: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (x.unsqueeze(2) * c.unsqueeze(1)).flatten(1) @ weight.t()


class HyperLinear(nn.Module):
    """One generated linear layer ``x -> W(c) x + b(c)`` with W, b affine in the conditioning c."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, init_scale: float = 0.1):
        super().__init__()
        bound = init_scale / math.sqrt(cond_dim)
        self.weight_of_cond = nn.Parameter(torch.empty(out_dim, in_dim * cond_dim).uniform_(-bound, bound))
        self.weight_base = nn.Parameter(torch.empty(out_dim, in_dim).uniform_(-bound, bound))
        self.bias_of_cond = nn.Parameter(torch.empty(out_dim, cond_dim).uniform_(-bound, bound))
        self.bias_base = nn.Parameter(torch.empty(out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight_base) + F.linear(cond, self.bias_of_cond, self.bias_base)
        if _records_graph(x, cond, self.weight_of_cond):
            return y + run_autocast_aware(_Bilinear.apply, x, cond, self.weight_of_cond)
        return y + run_autocast_aware(_bilinear, x, cond, self.weight_of_cond)


class HyperNetwork(nn.Module):
    """Per-atom MLP whose weights are generated from a conditioning vector.

    Generator: ``cond -> [Linear, tanh] x len(generator_dims)``. Generated network:
    ``dim -> hidden_dims... -> dim`` with a non-affine LayerNorm and tanh after every hidden layer
    and a plain linear output.
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        generator_dims: tuple[int, ...] = (128, 128, 128),
        hidden_dims: tuple[int, ...] = (128, 128, 128),
    ):
        super().__init__()
        gen: list[nn.Module] = []
        width = cond_dim
        for d in generator_dims:
            gen += [nn.Linear(width, d), nn.Tanh()]
            width = d
        self.generator = nn.Sequential(*gen)
        dims = (dim, *hidden_dims, dim)
        self.layers = nn.ModuleList(HyperLinear(a, b, width) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = self.generator(cond)
        for j, layer in enumerate(self.layers):
            x = layer(x, c)
            if j < len(self.layers) - 1:
                x = torch.tanh(F.layer_norm(x, x.shape[-1:]))
        return x
