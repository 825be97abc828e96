"""How far a crystal's pooled representation lies from those of the crystals the model was trained on.

The element counts and volume range of :mod:`matgl_cgat.domain` miss a crystal made of common
elements in an arrangement the model never saw: diamond is all carbon, its volume per atom is in
range, and a formation-energy model still answered +2.7 eV/atom for it. What the network makes of
the arrangement is in its own pooled representation, the input of every head. This module keeps a
compressed copy of the training crystals' representations and measures, for a new crystal, the
mean distance to its ``neighbors`` nearest training crystals:

* the representation is standardised per feature (training mean and std) and projected on its
  leading principal components, so a few widely varying features do not decide alone and the stored
  copy stays small (a few thousand crystals times 16 numbers);
* the distance is divided by its median over the validation crystals, so ``1`` is a typical crystal
  of the model's own kind and the value reads the same for every model;
* ``threshold`` (placed on validation) separates "like the training crystals" from "unlike them",
  and ``widen`` is the factor by which the sigma of a crystal beyond it is multiplied, measured on
  validation as how much larger flagged crystals' errors are relative to their sigma.

The buffers hold zeros until :func:`matgl_cgat.novelty.fit_representation_domain` fills them; their
shapes are fixed at construction so that a saved model loads its values with its weights.
"""

from __future__ import annotations

import torch
from torch import nn


class RepresentationNovelty(nn.Module):
    """Distance of pooled representations to stored training ones, in units of a typical crystal's."""

    def __init__(self, width: int, components: int, points: int, neighbors: int = 5):
        super().__init__()
        if not 1 <= components <= width:
            raise ValueError(f"components must lie in 1..{width} (the representation's width), got {components}")
        if points < neighbors or neighbors < 1:
            raise ValueError(f"need at least neighbors={neighbors} >= 1 stored points, got {points}")
        self.neighbors = int(neighbors)
        self.register_buffer("center", torch.zeros(width))
        self.register_buffer("spread", torch.ones(width))
        self.register_buffer("basis", torch.zeros(components, width))
        self.register_buffer("points", torch.zeros(points, components))
        self.register_buffer("typical", torch.ones(()))
        self.register_buffer("threshold", torch.full((), float("inf")))
        self.register_buffer("widen", torch.ones(()))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, components) coordinates of pooled representations (B, width) in the stored basis."""
        x = (features.float() - self.center) / self.spread
        return x @ self.basis.T

    def raw_distance(self, coords: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
        """(B,) mean distance of projected points to their nearest stored points; ``exclude_self`` drops
        the nearest one (a stored point's distance to itself, when measuring the stored points)."""
        k = self.neighbors + int(exclude_self)
        out = []
        for start in range(0, coords.shape[0], 1024):  # bounds the (chunk, points) distance matrix
            # direct differences, not torch's |x|^2 + |y|^2 - 2 x.y shortcut: that one loses digits for near
            # points and varies with the matrix kernels' blocking (the golden answers must agree across stacks)
            d = torch.cdist(coords[start : start + 1024], self.points, compute_mode="donot_use_mm_for_euclid_dist")
            nearest = d.topk(min(k, d.shape[1]), dim=1, largest=False).values
            out.append(nearest[:, int(exclude_self):].mean(1))
        return torch.cat(out) if out else coords.new_zeros(0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) novelty: the mean distance to the nearest training crystals over a typical crystal's."""
        return self.raw_distance(self.project(features)) / self.typical
