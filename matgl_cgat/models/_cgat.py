"""CGAT, the crystal graph attention network, as a MatGL model.

Schmidt, Pettersson, Verdozzi, Botti & Marques, "Crystal graph attention networks for the prediction
of stable materials", Sci. Adv. 7, eabi7948 (2021). Implemented from the paper and the facts of the
reference (PyTorch Geometric) code as run, on DGL: Matscholar element inputs, shell-rank edges,
multi-head vector attention with per-channel edge softmax, hypernetwork atom updates, a Roost
composition context, attention readout and a residual ReZero output network.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from matgl.models._core import MatGLModel
from torch import nn

from matgl_cgat.graph import DEFAULT_TOLERANCE, ELEMENTS, CGATGraphConverter, composition_graph
from matgl_cgat.layers import AttentionReadout, CGATBlock, ElementEmbedding, ResidualHead, RoostContext

if TYPE_CHECKING:
    import dgl
    from matgl.graph.converters import GraphConverter

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
    """Crystal graph attention network (DGL). Predicts intensive per-crystal properties.

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
        predict_log_sigma: bool = False,
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
            hidden_ratio: hidden width of the attention MLPs is ``|z| / hidden_ratio``.
            generator_dims: hidden widths of the hypernetwork generator (tanh).
            hyper_hidden_dims: hidden widths of the generated per-atom network.
            edge_update: "mlp" (as run: ``e <- e + MLP(e)``) or "attention" (gated update from
                ``[h_i || e_ij || h_j]``, closer to the paper's text; about twice the cost).
            roost_dim, roost_heads, roost_steps, roost_hidden: Roost composition context.
            readout_heads: heads of the attention pooling (output width ``readout_heads * dim``).
            head_dims: widths of the residual output network.
            ntargets: number of targets predicted together.
            predict_log_sigma: also predict log(sigma) per target (aleatoric uncertainty, robust L1 loss).
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
        self.ntargets = ntargets
        self.predict_log_sigma = predict_log_sigma
        self.output_min = None if output_min is None else float(output_min)

        self.embedding = ElementEmbedding(dim)
        self.edge_embedding = nn.Embedding(num_neighbors, edge_dim)  # row r - 1 = shell rank r
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
        self.head = ResidualHead(self.readout.out_dim, tuple(head_dims), ntargets * (2 if predict_log_sigma else 1))
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

    def forward_normalized(self, g: dgl.DGLGraph) -> torch.Tensor:
        """Raw network output for a (batched) graph: (B, ntargets) normalised means, then log sigmas."""
        node_type = g.ndata["node_type"].long()
        num_nodes = g.batch_num_nodes()
        rank = g.edata["rank"].long()
        if rank.numel() and (int(rank.max()) > self.num_neighbors or int(rank.min()) < 1):
            raise ValueError(
                f"edge ranks span {int(rank.min())}..{int(rank.max())} but this model embeds 1..{self.num_neighbors}: "
                "build graphs with CGATGraphConverter(num_neighbors=model.num_neighbors)"
            )
        src, dst = (t.long() for t in g.edges())
        h0 = self.embedding(node_type)
        h, e, edge_index = h0, self.edge_embedding.weight, rank - 1
        for block in self.blocks:
            h, e, edge_index = block(g, src, dst, h, h0, e, edge_index)
        comp = composition_graph(node_type, num_nodes, len(ELEMENTS))
        context = self.context(comp.graph, self.embedding.table[comp.element_type], comp.fraction, comp.num_elements)
        return self.head(self.readout(h, context, num_nodes))

    def forward(
        self,
        g: dgl.DGLGraph,
        state_attr: torch.Tensor | None = None,
        l_g: dgl.DGLGraph | None = None,
        return_log_sigma: bool = False,
        **kwargs,
    ):
        """Predict for a batch of graphs from :class:`CGATGraphConverter`.

        Args:
            g: (batched) DGL graph.
            state_attr: unused (CGAT has no global state input); accepted for MatGL's training loop.
            l_g: unused; accepted for MatGL's signature.
            return_log_sigma: also return log(sigma) in the target's units (needs ``predict_log_sigma``).

        Returns:
            Predictions, squeezed like MatGL's models ((B,) for one target); with ``return_log_sigma``
            a tuple (prediction, log_sigma).
        """
        out = self.forward_normalized(g)
        pred = out[:, : self.ntargets] * self.data_std + self.data_mean
        if self.output_min is not None:
            pred = pred.clamp(min=self.output_min)
        if return_log_sigma:
            if not self.predict_log_sigma:
                raise ValueError("this model was built without predict_log_sigma=True")
            return torch.squeeze(pred), torch.squeeze(out[:, self.ntargets :] + torch.log(self.data_std))
        return torch.squeeze(pred)

    def predict_dataset(self, dataset, batch_size: int = 128) -> np.ndarray:
        """Predictions (target units) for every item of a dataset of MatGL ``(graph, ...)`` items, in order."""
        import dgl

        was_training = self.training
        self.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(dataset), batch_size):
                    graphs = [dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))]
                    out.append(self(dgl.batch(graphs).to(self.data_mean.device)).reshape(len(graphs), -1))
        finally:
            self.train(was_training)
        pred = torch.cat(out).cpu().numpy() if out else np.zeros((0, self.ntargets))
        return pred[:, 0] if self.ntargets == 1 else pred

    def transfer_blocks(self) -> dict[str, list[nn.Module]]:
        """The model's blocks from input to output, as freeze policies see them.

        ``embeddings`` (element and shell-rank), ``mp.0`` .. ``mp.{n-1}`` (message passing),
        ``readout`` (the attention pooling and the Roost context that conditions it) and ``head``.
        """
        blocks: dict[str, list[nn.Module]] = {"embeddings": [self.embedding, self.edge_embedding]}
        blocks.update({f"mp.{i}": [b] for i, b in enumerate(self.blocks)})
        blocks["readout"] = [self.context, self.readout]
        blocks["head"] = [self.head]
        return blocks

    def finetune(self, train, val=None, **kwargs) -> CGAT:
        """Fine-tune a copy of this model on new data; see :func:`matgl_cgat.transfer.finetune`."""
        from matgl_cgat.transfer import finetune

        return finetune(self, train, val, **kwargs)

    def graph_converter(self) -> CGATGraphConverter:
        """The converter whose graphs this model expects."""
        return CGATGraphConverter(num_neighbors=self.num_neighbors, tolerance=self.tolerance)

    def predict_structure(self, structure, state_attr=None, graph_converter: GraphConverter | None = None):
        """Predict the property of one pymatgen ``Structure`` (or ASE ``Atoms``), in the target's units."""
        g, _, _ = (graph_converter or self.graph_converter()).get_graph(structure)
        g = g.to(self.data_mean.device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self(g)
        finally:
            self.train(was_training)

    def save(self, path: str | Path = ".", metadata: dict | None = None, makedirs: bool = True):
        """MatGL's folder format (``model.json``, ``model.pt``, ``state.pt``); ``metadata`` defaults to
        ``self.metadata`` (e.g. the model card of a loaded or fine-tuned model)."""
        super().save(path, metadata if metadata is not None else getattr(self, "metadata", None), makedirs)

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
