"""CGAT, the crystal graph attention network, as a MatGL model.

Schmidt, Pettersson, Verdozzi, Botti & Marques, "Crystal graph attention networks for the prediction
of stable materials", Sci. Adv. 7, eabi7948 (2021). Implemented from the paper and the facts of the
reference (PyTorch Geometric) code as run, in plain torch (graph libraries stay in
``matgl_cgat.graph``'s adapters): Matscholar element inputs, shell-rank edges,
multi-head vector attention with per-channel edge softmax, hypernetwork atom updates, a Roost
composition context, attention readout and a residual ReZero output network.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from matgl.models._core import MatGLModel
from torch import nn

from matgl_cgat.graph import (
    DEFAULT_TOLERANCE,
    ELEMENTS,
    CGATGraphConverter,
    atom_graph_tensors,
    batch_graphs,
    composition_graph,
)
from matgl_cgat.layers import (
    AttentionReadout,
    CGATBlock,
    ElementEmbedding,
    FidelityFiLM,
    ResidualHead,
    RepresentationNovelty,
    RoostContext,
    condition_on_fidelities,
)
from matgl_cgat.models._answers import CrystalAnswers

if TYPE_CHECKING:
    from matgl.graph.converters import GraphConverter

#: What the model takes: a batched graph from CGATGraphConverter (DGL on MatGL 1.x, PyG from MatGL 2), or
#: its AtomGraphTensors (annotation only).
AtomGraph = Any

#: Named configurations. "paper" is the reference as run (about 62 M parameters, 44 M of them in the
#: hypernetworks); "small" is sized to train on 2 CPU cores (figures in benchmarks/RESULTS.md).
PRESETS: dict[str, dict] = {
    "paper": {
        "dim": 128,
        "edge_dim": 128,
        "nblocks": 5,
        "heads": 5,
        "generator_dims": (128, 128, 128),
        "hyper_hidden_dims": (128, 128, 128),
        "roost_dim": 128,
        "roost_heads": 3,
        "roost_steps": 3,
        "roost_hidden": 256,
        "readout_heads": 5,
        "head_dims": (1024, 1024, 512, 512, 256, 256, 128),
        "recompute_attention": True,
    },
    "small": {
        "dim": 64,
        "edge_dim": 32,
        "nblocks": 3,
        "heads": 3,
        "generator_dims": (32, 32),
        "hyper_hidden_dims": (64,),
        "roost_dim": 64,
        "roost_heads": 2,
        "roost_steps": 2,
        "roost_hidden": 96,
        "readout_heads": 3,
        "head_dims": (256, 128, 64),
    },
}


class CGAT(MatGLModel):
    """Crystal graph attention network. Predicts intensive per-crystal properties.

    ``forward`` returns predictions in the target's units: the network works on targets normalised by
    the stored ``data_mean``/``data_std`` (set them from the training set, see
    :meth:`set_normalization`) and de-normalises its output.
    """

    __version__ = 1

    def __init__(
        self,
        dim: int = 128,
        edge_dim: int = 128,
        nblocks: int = 5,
        heads: int = 5,
        num_neighbors: int = 24,
        tolerance: float = DEFAULT_TOLERANCE,
        shell_blend: float = 0.0,
        shell_counts: int = 0,
        hidden_ratio: float = 1.5,
        generator_dims: tuple[int, ...] = (128, 128, 128),
        hyper_hidden_dims: tuple[int, ...] = (128, 128, 128),
        edge_update: Literal["mlp", "attention"] = "mlp",
        roost_dim: int = 128,
        roost_heads: int = 3,
        roost_steps: int = 3,
        roost_hidden: int = 256,
        readout_heads: int = 5,
        head_dims: tuple[int, ...] = (1024, 1024, 512, 512, 256, 256, 128),
        ntargets: int = 1,
        fidelities: tuple[str, ...] | None = None,
        predict_log_sigma: bool = False,
        sigma_hidden: int | None = None,
        metal_hidden: int | None = None,
        metal_threshold: float = 0.0,
        metal_below: float = 0.1,
        novelty: tuple[int, int, int] | None = None,
        data_mean: float | list[float] = 0.0,
        data_std: float | list[float] = 1.0,
        output_min: float | None = None,
        slope: float = 0.01,
        recompute_attention: bool = False,
        **kwargs,
    ):
        """Defaults are the reference as run (the "paper" preset).

        Args:
            dim: atom state width.
            edge_dim: edge state width (128 as run; the paper lists 512).
            nblocks: message-passing steps.
            heads: attention heads per step (5 as run; the paper lists 6).
            num_neighbors: neighbours per atom; must match the converter.
            tolerance: equal-distance tolerance (A) of the converter used by :meth:`predict_structure`.
            shell_blend: the converter's ``blend`` (A): 0 for integer shell ranks (the paper); above 0,
                ranks move continuously with the geometry and the edge state of a fractional rank
                blends the two shells' states (see :meth:`set_shell_blend`).
            shell_counts: 0 (the paper) or the number of innermost shells whose occupancy (how many of
                an atom's ``num_neighbors`` neighbours lie in shell 1, 2, ...) is added, through a
                linear map, to the atom's input state. The attention softmax averages over neighbours,
                so a shell's size is otherwise nearly invisible: the "small" preset's representation of
                diamond lies as close to 1-atom simple-cubic carbon (4 against 6 nearest neighbours) as
                to itself, and both get +2.7 eV/atom (docs/results.md 12.4).
            hidden_ratio: hidden width of the attention MLPs is ``|z| / hidden_ratio``.
            generator_dims: hidden widths of the hypernetwork generator (tanh).
            hyper_hidden_dims: hidden widths of the generated per-atom network.
            edge_update: "mlp" (as run: ``e <- e + MLP(e)``) or "attention" (gated update from
                ``[h_i || e_ij || h_j]``, closer to the paper's text; about twice the cost).
            roost_dim, roost_heads, roost_steps, roost_hidden: Roost composition context.
            readout_heads: heads of the attention pooling (output width ``readout_heads * dim``).
            head_dims: widths of the residual output network.
            ntargets: number of targets predicted together.
            fidelities: names of the fidelities (functionals, e.g. ``("pbe", "hse")``) of a
                multi-fidelity model: one property, one output per fidelity, each from the shared
                representation re-weighted by that fidelity's learned scale and shift
                (:class:`~matgl_cgat.layers.FidelityFiLM`); sets ``ntargets`` to their number. Train it
                on the per-fidelity label columns in this order (missing labels are masked).
            predict_log_sigma: also predict log(sigma) per target (aleatoric uncertainty, robust L1 loss).
            sigma_hidden: hidden width of the uncertainty head, a small MLP from the pooled crystal
                representation to log(sigma) per target, fitted after training on the frozen network
                (:func:`matgl_cgat.uncertainty.fit_sigma_head`); None: no head.
            metal_hidden: hidden width of the metal gate, a small MLP from the pooled crystal representation
                to a metal-versus-non-metal logit per output, fitted after training on the frozen
                network (:func:`matgl_cgat.gate.fit_metal_gate`); where its logit is above
                ``metal_threshold`` the prediction is ``output_min`` (a metal's zero gap), elsewhere
                it is the regression's. None: no gate (every property but a band gap).
            metal_threshold: logit above which the gate calls a crystal a metal (chosen on validation).
            metal_below: the gap (target units) below which a training label counts as a metal.
            novelty: ``(components, points, neighbors)`` of a representation-domain check
                (:class:`~matgl_cgat.layers.RepresentationNovelty`): how far a crystal's pooled
                representation lies from the training crystals', filled after training by
                :func:`matgl_cgat.novelty.fit_representation_domain`; beyond its threshold a crystal
                is flagged and its sigma widened. None: no such check.
            data_mean, data_std: target normalisation (training-set mean and std).
            output_min: lower bound of ``forward``'s predictions in target units (0 for hull distances
                and band gaps, which cannot be negative; None: unbounded). Training losses and the
                logged training/validation MAE see the unbounded output, so the bound can be set after
                training without changing what was trained.
            slope: leaky-ReLU slope.
            recompute_attention: recompute the per-edge attention tensors in the backward pass instead
                of storing them (activation checkpointing): same results, much less training memory,
                some extra time. On in the "paper" preset.
            **kwargs: ignored; kept for MatGL's serialisation convention.
        """
        super().__init__()
        self.save_args(locals(), kwargs)
        self.element_types = ELEMENTS
        self.num_neighbors = num_neighbors
        self.tolerance = tolerance
        if not (shell_blend >= 0 and math.isfinite(shell_blend)):
            raise ValueError(f"shell_blend must be a finite number >= 0, got {shell_blend}")
        self.shell_blend = float(shell_blend)
        if not 0 <= int(shell_counts) <= num_neighbors:
            raise ValueError(f"shell_counts must lie in 0..num_neighbors={num_neighbors}, got {shell_counts}")
        self.shell_counts = int(shell_counts)
        if fidelities is not None:
            fidelities = tuple(str(f) for f in fidelities)
            if not fidelities or len({f.lower() for f in fidelities}) != len(fidelities):
                raise ValueError(f"fidelities must be distinct names, got {fidelities}")
            ntargets = len(fidelities)
        self.fidelities = fidelities
        self.ntargets = ntargets
        self.predict_log_sigma = predict_log_sigma
        self.output_min = None if output_min is None else float(output_min)

        self.embedding = ElementEmbedding(dim)
        self.edge_embedding = nn.Embedding(num_neighbors, edge_dim)  # row r - 1 = shell rank r
        self.shell_occupancy = nn.Linear(self.shell_counts, dim) if self.shell_counts else None
        self.blocks = nn.ModuleList(
            CGATBlock(
                dim,
                edge_dim,
                heads,
                first=i == 0,
                generator_dims=tuple(generator_dims),
                hyper_hidden_dims=tuple(hyper_hidden_dims),
                edge_update=edge_update,
                hidden_ratio=hidden_ratio,
                slope=slope,
                update_edges=i < nblocks - 1,
                recompute_attention=recompute_attention,
            )
            for i in range(nblocks)
        )
        self.context = RoostContext(roost_dim, roost_heads, roost_steps, roost_hidden, pool_heads=roost_heads)
        self.readout = AttentionReadout(dim, roost_dim, readout_heads)
        per_row = 1 if fidelities else ntargets  # a multi-fidelity head is applied once per fidelity
        self.head = ResidualHead(self.readout.out_dim, tuple(head_dims), per_row * (2 if predict_log_sigma else 1))
        self.fidelity_film = nn.ModuleList(FidelityFiLM(self.readout.out_dim) for _ in fidelities) if fidelities else None
        self.sigma_head = self._sigma_head(sigma_hidden) if sigma_hidden else None
        self.metal_head = self._sigma_head(metal_hidden) if metal_hidden else None
        self.metal_threshold = float(metal_threshold)
        self.metal_below = float(metal_below)
        self.novelty = RepresentationNovelty(self.readout.out_dim, *novelty) if novelty else None
        self.register_buffer("data_mean", torch.zeros(ntargets))
        self.register_buffer("data_std", torch.ones(ntargets))
        self.set_normalization(data_mean, data_std)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> CGAT:
        """Build a named configuration (``"paper"`` or ``"small"``); keyword arguments override it."""
        try:
            config = dict(PRESETS[name])
        except KeyError:
            raise ValueError(f"unknown CGAT preset {name!r}; choose from {sorted(PRESETS)}") from None
        config.update(overrides)
        return cls(**config)

    def set_normalization(self, mean: float | list[float] | torch.Tensor, std: float | list[float] | torch.Tensor):
        """Store the target mean and std (per target) used to de-normalise the output."""
        if self.data_mean.is_meta:  # a network of shapes only (the loader's check of a saved folder): no values
            return
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1).expand(self.ntargets).clone()
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1).expand(self.ntargets).clone()
        if not torch.all(torch.isfinite(mean_t)) or not torch.all(std_t > 0):
            raise ValueError(f"normalisation needs finite means and positive stds, got {mean_t}, {std_t}")
        self.data_mean.copy_(mean_t)
        self.data_std.copy_(std_t)
        self._init_args["data_mean"] = mean_t.tolist()
        self._init_args["data_std"] = std_t.tolist()

    def set_output_min(self, value: float | None) -> None:
        """Bound predictions from below (e.g. 0 for a non-negative property); saved with the model."""
        self.output_min = None if value is None else float(value)
        self._init_args["output_min"] = self.output_min

    def _sigma_head(self, hidden: int) -> nn.Module:
        out = 1 if self.fidelities else self.ntargets
        return nn.Sequential(nn.Linear(self.readout.out_dim, hidden), nn.SiLU(), nn.Linear(hidden, out))

    def set_sigma_head(self, hidden: int | None) -> None:
        """Add a fresh (untrained) uncertainty head of this width, or remove it with None; saved with the model.

        Fine-tuning removes it: a head fitted to one network's errors says nothing about another's.
        """
        self.sigma_head = self._sigma_head(hidden).to(self.data_mean.device) if hidden else None
        self._init_args["sigma_hidden"] = hidden

    def set_metal_gate(self, hidden: int | None, threshold: float = 0.0) -> None:
        """Add a fresh (untrained) metal gate of this width and logit threshold, or remove it with None.

        Saved with the model. Fine-tuning removes it, like the uncertainty head: it reads the
        representation of the network it was fitted on.
        """
        self.metal_head = self._sigma_head(hidden).to(self.data_mean.device) if hidden else None
        self.metal_threshold = float(threshold)
        self._init_args["metal_hidden"] = hidden
        self._init_args["metal_threshold"] = self.metal_threshold

    def set_novelty(self, components: int | None, points: int = 0, neighbors: int = 5) -> None:
        """Add an empty representation-domain check of these sizes (see ``novelty`` in :meth:`__init__`),
        or remove it with None; saved with the model. Fine-tuning removes it: the stored training
        representations belong to the network they were computed with."""
        shape = (int(components), int(points), int(neighbors)) if components else None
        self.novelty = RepresentationNovelty(self.readout.out_dim, *shape).to(self.data_mean.device) if shape else None
        self._init_args["novelty"] = shape

    def set_metal_threshold(self, threshold: float) -> None:
        """Move the gate's decision threshold (a logit); saved with the model."""
        self.metal_threshold = float(threshold)
        self._init_args["metal_threshold"] = self.metal_threshold

    def metal_logit(self, features: torch.Tensor) -> torch.Tensor:
        """(B, ntargets) metal-versus-non-metal logits from the gate (positive: more likely a metal)."""
        if self.metal_head is None:
            raise ValueError("this model has no metal gate; fit one with matgl_cgat.gate.fit_metal_gate")
        if self.fidelities is None:
            return self.metal_head(features)
        return self.metal_head(condition_on_fidelities(features, self.fidelity_film))[..., 0]

    def metal_probability(self, g: AtomGraph) -> torch.Tensor:
        """(B, ntargets) probability that each crystal is a metal (gap below ``metal_below``), per output."""
        return torch.sigmoid(self.metal_logit(self.represent(g)).float())

    def is_metal(self, g: AtomGraph) -> torch.Tensor:
        """(B, ntargets) booleans: the gate's decision (logit above ``metal_threshold``)."""
        return self.metal_logit(self.represent(g)).float() > self.metal_threshold

    def metal_decision(self, g: AtomGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, ntargets) decisions and metal probabilities from one pass (what ``mgl-cgat predict`` shows)."""
        logit = self.metal_logit(self.represent(g)).float()
        return logit > self.metal_threshold, torch.sigmoid(logit)

    def represent(self, g: AtomGraph) -> torch.Tensor:
        """Pooled crystal representation (B, readout width): the input of the output network and of the
        uncertainty head. ``g``: a batch of graphs from :class:`CGATGraphConverter` (DGL) or its
        :class:`~matgl_cgat.graph.AtomGraphTensors`; everything below is plain torch."""
        x = atom_graph_tensors(g)
        rank = x.rank
        if rank.numel() and (int(rank.max()) > self.num_neighbors or int(rank.min()) < 1):
            raise ValueError(
                f"edge ranks span {int(rank.min())}..{int(rank.max())} but this model embeds 1..{self.num_neighbors}: "
                "build graphs with CGATGraphConverter(num_neighbors=model.num_neighbors)"
            )
        src, dst = x.src, x.dst
        h0 = self.embedding(x.node_type)
        if self.shell_occupancy is not None:
            h0 = h0 + self.shell_occupancy(self._shell_occupancy(dst, rank, h0.shape[0]).to(h0.dtype))
        if rank.is_floating_point():
            e, edge_index = self._blended_edge_states(rank)
        else:
            e, edge_index = self.edge_embedding.weight, rank - 1
        h = h0
        for block in self.blocks:
            h, e, edge_index = block(src, dst, h, h0, e, edge_index)
        comp = composition_graph(x.node_type, x.num_atoms, len(ELEMENTS))
        context = self.context(comp.src, comp.dst, self.embedding.table[comp.element_type], comp.fraction,
                               comp.num_elements)
        return self.readout(h, context, x.num_atoms)

    def _shell_occupancy(self, dst: torch.Tensor, rank: torch.Tensor, num_atoms: int) -> torch.Tensor:
        """(atoms, shell_counts): the share of each atom's neighbours in shells 1..shell_counts; a blended
        rank ``r + w`` counts ``1 - w`` in shell r and ``w`` in shell r + 1, so the occupancy moves
        continuously with the geometry as the edge states do."""
        counts = torch.zeros(num_atoms, self.shell_counts + 2, device=rank.device)
        r = rank.float()
        lower = r.floor().long().clamp(1, self.shell_counts + 1)
        w = (r - r.floor()).clamp(0.0, 1.0)
        upper = (lower + 1).clamp(max=self.shell_counts + 1)
        counts.index_put_((dst, lower), 1.0 - w, accumulate=True)
        counts.index_put_((dst, upper), w, accumulate=True)
        return counts[:, 1 : self.shell_counts + 1] / self.num_neighbors  # column shell_counts + 1: beyond

    def _blended_edge_states(self, rank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edge-state table and row of every edge for real-valued ranks: rank ``r + w`` (``0 <= w < 1``)
        starts as ``(1 - w) * state(r) + w * state(r + 1)``. One row per distinct rank in the batch, so
        the edge updates still run on a table, not per edge; integer ranks give the embedding's rows."""
        values, edge_index = torch.unique(rank, return_inverse=True)
        table = self.edge_embedding.weight
        lower = values.floor().clamp(1, self.num_neighbors)
        w = (values - lower).clamp(0.0, 1.0).unsqueeze(1).to(table.dtype)
        lo = lower.long() - 1
        hi = (lo + 1).clamp(max=self.num_neighbors - 1)
        return table[lo] * (1.0 - w) + table[hi] * w, edge_index

    def set_shell_blend(self, width: float) -> None:
        """Build graphs with blended shell ranks of this width (A) from now on, and save it with the
        model (the converter's ``blend``). 0 returns to integer ranks. Changes no weight: a model
        trained on integer ranks sees fractional ones for every neighbour beyond a gap that lies
        between the tolerance and the tolerance plus ``width`` (the fractions add up along the
        sorted list); measure it on validation before shipping it (docs/results.md 12.2)."""
        if not (width >= 0 and math.isfinite(width)):
            raise ValueError(f"shell blend must be a finite number >= 0, got {width}")
        self.shell_blend = float(width)
        self._init_args["shell_blend"] = self.shell_blend

    def head_output(self, features: torch.Tensor) -> torch.Tensor:
        """Output network on pooled representations: (B, ntargets) normalised means, then log sigmas."""
        if self.fidelities is None:
            return self.head(features)
        out = self.head(condition_on_fidelities(features, self.fidelity_film))  # (B, F, 1 or 2)
        return out.permute(0, 2, 1).reshape(out.shape[0], -1)  # means of every fidelity, then log sigmas

    def sigma_output(self, features: torch.Tensor) -> torch.Tensor:
        """(B, ntargets) log(sigma) in normalised units from the uncertainty head."""
        if self.fidelities is None:
            return self.sigma_head(features)
        return self.sigma_head(condition_on_fidelities(features, self.fidelity_film))[..., 0]

    def fidelity_index(self, fidelity: str) -> int:
        """Column of a fidelity (case-insensitive) in a multi-fidelity model's output."""
        if self.fidelities is None:
            raise ValueError(f"this is a single-fidelity model; fidelity={fidelity!r} applies to multi-fidelity models")
        names = [f.lower() for f in self.fidelities]
        if str(fidelity).lower() not in names:
            raise ValueError(f"unknown fidelity {fidelity!r}; this model knows {list(self.fidelities)}")
        return names.index(str(fidelity).lower())

    def forward_normalized(self, g: AtomGraph) -> torch.Tensor:
        """Raw network output for a (batched) graph: (B, ntargets) normalised means, then log sigmas."""
        return self.head_output(self.represent(g))

    def predict_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, ntargets) predictions in target units from pooled representations, gated where the model
        has a metal gate: the gate decides metal or not, the regression gives a non-metal's gap."""
        pred = self.denormalize(self.head_output(features))
        if self.metal_head is None:
            return pred
        metal = self.metal_logit(features).float() > self.metal_threshold
        return torch.where(metal, torch.full_like(pred, self.output_min or 0.0), pred)

    def denormalize(self, out: torch.Tensor) -> torch.Tensor:
        """(B, ntargets) predictions in target units, bounded by ``output_min``, from the raw output."""
        pred = out[:, : self.ntargets] * self.data_std + self.data_mean
        return pred if self.output_min is None else pred.clamp(min=self.output_min)

    def forward(
        self,
        g: AtomGraph,
        state_attr: torch.Tensor | None = None,
        l_g: object | None = None,
        return_log_sigma: bool = False,
        return_sigma: bool = False,
        **kwargs,
    ):
        """Predict for a batch of graphs from :class:`CGATGraphConverter`.

        Args:
            g: a batch of graphs from :class:`CGATGraphConverter` (a DGL graph on MatGL 1.x) or its
                :class:`~matgl_cgat.graph.AtomGraphTensors`.
            state_attr: MatGL's state attribute. For a multi-fidelity model, integer fidelity ids, one per
                crystal (what ``MGLDataset(graph_labels=fidelity_ids)`` gives, MatGL's own multi-fidelity
                recipe): then the prediction is each crystal's own fidelity, shape (B,), as MatGL's loss
                expects. Floating-point state (MatGL's default zeros) is ignored: CGAT has no state input.
            l_g: unused; accepted for MatGL's signature.
            return_log_sigma: also return log(sigma) in the target's units (needs ``predict_log_sigma``).
            return_sigma: also return the standard deviation of the prediction from the uncertainty
                head (needs one, see :meth:`set_sigma_head`), in the target's units.

        Returns:
            Predictions, squeezed like MatGL's models ((B,) for one target); with ``return_log_sigma``
            or ``return_sigma`` a tuple (prediction, log_sigma or sigma).
        """
        pick = self._fidelity_rows(state_attr)
        if return_sigma:
            return tuple(torch.squeeze(pick(t)) for t in self.outputs(g, return_sigma=True))
        if not return_log_sigma:
            return torch.squeeze(pick(self.outputs(g)[0]))
        if not self.predict_log_sigma:
            raise ValueError("this model was built without predict_log_sigma=True")
        out = self.forward_normalized(g)
        return torch.squeeze(self.denormalize(out)), torch.squeeze(out[:, self.ntargets :] + torch.log(self.data_std))

    def _fidelity_rows(self, state_attr: torch.Tensor | None):
        """A function taking (B, F) outputs to each crystal's own fidelity, (B, 1), when ``state_attr``
        holds integer fidelity ids of a multi-fidelity model; the identity otherwise."""
        if self.fidelities is None or state_attr is None or state_attr.is_floating_point():
            return lambda t: t
        ids = state_attr.reshape(-1).long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self.fidelities)):
            raise ValueError(f"fidelity ids span {int(ids.min())}..{int(ids.max())}; this model has "
                             f"{len(self.fidelities)} fidelities {list(self.fidelities)} (ids 0..{len(self.fidelities) - 1})")
        return lambda t: t.gather(1, ids.to(t.device).view(-1, 1))

    def outputs(self, g: AtomGraph, return_sigma: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(prediction, sigma)`` as (B, ntargets) tensors in target units, never squeezed (sigma None
        unless ``return_sigma``): for callers that pick columns, e.g. one fidelity."""
        if return_sigma and self.sigma_head is None:
            raise ValueError("this model has no uncertainty head; fit one with matgl_cgat.uncertainty.fit_sigma_head")
        features = self.represent(g)
        pred = self.predict_from_features(features)
        if not return_sigma:
            return pred, None
        return pred, self._sigma(features)[0]

    def _sigma(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, ntargets) sigma in target units from the uncertainty head, multiplied by the novelty
        check's ``widen`` for crystals beyond its threshold; and the (B,) novelty (None without a check)."""
        sigma = torch.exp(self.sigma_output(features).float().clamp(-20.0, 20.0)) * self.data_std
        if self.novelty is None:
            return sigma, None
        novelty = self.novelty(features)
        widen = torch.where(novelty > self.novelty.threshold, self.novelty.widen, torch.ones_like(novelty))
        return sigma * widen.unsqueeze(1), novelty

    def answers(self, g: AtomGraph) -> CrystalAnswers:
        """Value, sigma (with an uncertainty head) and metal decision (with a gate) for a batch of graphs,
        all from one representation: what a screening table needs, at the cost of one forward pass."""
        features = self.represent(g)
        value = self.predict_from_features(features)
        sigma = metal = probability = novelty = None
        if self.sigma_head is not None:
            sigma, novelty = self._sigma(features)
        elif self.novelty is not None:
            novelty = self.novelty(features)
        if self.metal_head is not None:
            logit = self.metal_logit(features).float()
            metal, probability = logit > self.metal_threshold, torch.sigmoid(logit)
        return CrystalAnswers(value, sigma, metal, probability, novelty)

    def predict_dataset(self, dataset, batch_size: int = 128) -> np.ndarray:
        """Predictions (target units) for every item of a dataset of MatGL ``(graph, ...)`` items, in order.

        Keeps freed memory in the process for reuse (:mod:`matgl_cgat._allocator`; 1.6x faster on CPU)."""
        from matgl_cgat._allocator import keep_freed_memory

        keep_freed_memory()
        was_training = self.training
        self.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(dataset), batch_size):
                    graphs = [dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))]
                    out.append(self(batch_graphs(graphs).to(self.data_mean.device)).reshape(len(graphs), -1))
        finally:
            self.train(was_training)
        pred = torch.cat(out).cpu().numpy() if out else np.zeros((0, self.ntargets))
        return pred[:, 0] if self.ntargets == 1 else pred

    def transfer_blocks(self) -> dict[str, list[nn.Module]]:
        """The model's blocks from input to output, as freeze policies see them.

        ``embeddings`` (element and shell-rank), ``mp.0`` .. ``mp.{n-1}`` (message passing),
        ``readout`` (the attention pooling and the Roost context that conditions it) and ``head``.
        """
        blocks: dict[str, list[nn.Module]] = {"embeddings": [self.embedding, self.edge_embedding]
                                              + ([self.shell_occupancy] if self.shell_occupancy is not None else [])}
        blocks.update({f"mp.{i}": [b] for i, b in enumerate(self.blocks)})
        blocks["readout"] = [self.context, self.readout]
        for name, film in zip(self.fidelities or (), self.fidelity_film or ()):
            blocks[f"fidelity.{name}"] = [film]
        blocks["head"] = [self.head]
        return blocks

    def finetune(self, train, val=None, **kwargs) -> CGAT:
        """Fine-tune a copy of this model on new data; see :func:`matgl_cgat.transfer.finetune`."""
        from matgl_cgat.transfer import finetune

        return finetune(self, train, val, **kwargs)

    def graph_converter(self) -> CGATGraphConverter:
        """The converter whose graphs this model expects."""
        return CGATGraphConverter(num_neighbors=self.num_neighbors, tolerance=self.tolerance, blend=self.shell_blend)

    def predict_structure(self, structure, state_attr=None, graph_converter: GraphConverter | None = None,
                          return_sigma: bool = False, check_domain: bool = True, fidelity: str | None = None,
                          check_strain: bool = True):
        """Predict the property of one pymatgen ``Structure`` (or ASE ``Atoms``), in the target's units.

        Args:
            return_sigma: return ``(prediction, sigma)``, sigma from the uncertainty head (every shipped
                model has one; its calibration is in the model card).
            check_domain: warn (:class:`DomainWarning`) when the crystal is unlike the training data
                (see :mod:`matgl_cgat.domain`): rare elements, unusual geometry, reduced periodicity, and
                (with a representation-domain check, :mod:`matgl_cgat.novelty`) an unfamiliar structure.
            fidelity: for a multi-fidelity model, the functional to predict (e.g. ``"hse"``); without
                it such a model returns every fidelity's value, in ``model.fidelities`` order.
            check_strain: probe the crystal under 1% strains (:mod:`matgl_cgat.continuity`): sigma grows
                by the largest change of the answer (in quadrature), and with ``check_domain`` a change
                beyond the model's MAE is warned of (the crystal sits near a neighbour-shell boundary).

        Raises:
            ImpossibleStructure: a structure no crystal can have (overlapping atoms, non-finite numbers).
        """
        card = getattr(self, "metadata", None)
        if isinstance(card, dict) and "anchor" in card:  # a Δ-model's output is only half of the answer
            raise ValueError(f"{card.get('name', 'this model')} predicts the residual to the universal potential "
                             f"{card['anchor'].get('potential')}; predict with "
                             "matgl_cgat.potentials.anchored_predictions(model, structures) or mgl-cgat predict")
        column = self.fidelity_index(fidelity) if fidelity is not None else None
        if check_domain:
            from matgl_cgat.domain import DomainWarning, TrainingDomain, domain_flags, formula_of

            flags = domain_flags(structure, TrainingDomain.of_model(self))
            if flags:
                warnings.warn(f"{formula_of(structure)}: " + "; ".join(flags.messages()), DomainWarning, stacklevel=2)
        if return_sigma and self.sigma_head is None:
            raise ValueError("this model has no uncertainty head; fit one with matgl_cgat.uncertainty.fit_sigma_head")
        g, _, _ = (graph_converter or self.graph_converter()).get_graph(structure)
        g = g.to(self.data_mean.device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                said = self.answers(g)  # one pass: value, sigma (widened where novel) and the novelty
            pred, sigma = said.value, said.sigma
            if check_strain:
                pred, sigma = self._strain_checked(structure, graph_converter or self.graph_converter(), g, pred,
                                                   sigma, check_domain)
        finally:
            self.train(was_training)
        far = said.beyond(float(self.novelty.threshold)) if self.novelty is not None else None
        if check_domain and far is not None and bool(far[0]):
            from matgl_cgat.domain import DomainWarning, formula_of

            warnings.warn(f"{formula_of(structure)}: unlike the training crystals (representation distance "
                          f"{float(said.novelty[0]):.1f}x a typical crystal's, flagged above "
                          f"{float(self.novelty.threshold):.1f}); sigma widened x{float(self.novelty.widen):.2f}",
                          DomainWarning, stacklevel=2)
        if column is not None:
            return (pred[0, column], sigma[0, column]) if return_sigma else pred[0, column]
        return (torch.squeeze(pred), torch.squeeze(sigma)) if return_sigma else torch.squeeze(pred)

    def _strain_checked(self, structure, converter, g, pred, sigma, warn: bool):
        """``predict_structure``'s strain check: (value, sigma widened by the strain spread); warns where
        the spread exceeds the model's MAE."""
        from matgl_cgat.continuity import own_mae, strain_spread, strained_graphs
        from matgl_cgat.graph import as_checked_structure

        probes = strained_graphs(converter, [as_checked_structure(structure)], [g])
        values = None
        if probes.graphs is not None:
            with torch.no_grad():
                values = self.answers(probes.graphs.to(self.data_mean.device)).value
        spread = strain_spread(pred, values, probes.owner)
        if sigma is not None:
            sigma = torch.hypot(sigma, spread)
        names = self.fidelities or [None]
        for j, fidelity in enumerate(names):
            limit = own_mae(self, fidelity)
            if warn and limit is not None and float(spread[0, j]) > limit:
                from matgl_cgat.domain import DomainWarning, formula_of

                what = f" ({fidelity})" if fidelity else ""
                warnings.warn(f"{formula_of(structure)}{what}: near a neighbour-shell boundary: a 1% strain moves the "
                              f"answer by {float(spread[0, j]):.3g}, more than the model's MAE ({limit:.3g}); sigma "
                              "widened to include it", DomainWarning, stacklevel=3)
        return pred, sigma

    def save(self, path: str | Path = ".", metadata: dict | None = None, makedirs: bool = True):
        """MatGL's folder format (``model.json``, ``model.pt``, ``state.pt``); ``metadata`` defaults to
        ``self.metadata`` (e.g. the model card of a loaded or fine-tuned model). Written atomically
        (:func:`matgl_cgat._io.save_model_folder`): re-saving over a model never leaves a mix."""
        from matgl_cgat._io import save_model_folder

        if not makedirs and not Path(path).is_dir():
            raise FileNotFoundError(f"{path}: no such folder (pass makedirs=True)")
        card = metadata if metadata is not None else getattr(self, "metadata", None)
        save_model_folder(lambda folder: super(CGAT, self).save(folder, card, True), path)

    @classmethod
    def load(cls, path: str | Path | dict, **kwargs) -> CGAT:
        """Load a model saved with :meth:`save` from a folder (or MatGL's dict of file paths).

        Unlike MatGL's generic loader this never goes to the network and reads the checkpoint files
        with ``weights_only=True``, so a model folder cannot execute code.
        """
        if isinstance(path, dict):
            files = {k: Path(v) for k, v in path.items()}
        else:
            files = {name: Path(path) / name for name in ("model.json", "model.pt", "state.pt")}
        missing = [str(p) for p in files.values() if not p.exists()]
        if missing:
            raise FileNotFoundError(f"not a saved CGAT model: missing {', '.join(missing)}")
        meta = json.loads(files["model.json"].read_text())
        if meta.get("@class") != cls.__name__:
            raise ValueError(f"{files['model.json']} holds a {meta.get('@class')!r}, not a {cls.__name__}")
        if meta.get("@model_version", 0) < cls.__version__:
            warnings.warn(f"{files['model.json']} was saved by an older CGAT version", UserWarning, stacklevel=2)
        init_args = torch.load(files["model.pt"], map_location="cpu", weights_only=True)
        state = torch.load(files["state.pt"], map_location="cpu", weights_only=True)
        model = cls(**{k: v for k, v in init_args.items() if not k.startswith("@")})
        model.load_state_dict(state, strict=True)
        model.metadata = meta.get("metadata")
        return model
