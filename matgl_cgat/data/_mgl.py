"""Build MatGL datasets from structures without touching a stale on-disk cache."""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
from collections.abc import Sequence

from matgl.graph.data import MGLDataset

from matgl_cgat.graph import CGATGraphConverter, graph_library


def graph_dataset(structures: Sequence, labels: dict[str, Sequence[float]], converter,
                  graph_labels: Sequence[int] | None = None, line_graph: bool = False,
                  threebody_cutoff: float = 4.0) -> MGLDataset:
    """An in-memory ``MGLDataset`` of ``converter`` graphs.

    ``MGLDataset`` loads whatever processed cache sits in its ``save_dir`` (the working directory by
    default), even when ``save_cache=False``; building it in a fresh temporary folder guarantees that
    the graphs are those of ``converter`` and ``structures``. The bond vectors MatGL adds to every
    edge are dropped from CGAT graphs: CGAT does not read them. ``graph_labels`` become MatGL's state
    attributes (integer fidelity ids for a multi-fidelity CGAT, as in MatGL's own multi-fidelity example).

    ``line_graph``: the three-body line graphs M3GNet needs. MatGL 1.x builds them in the dataset
    (``threebody_cutoff``) and batches them with :func:`mgl_collate`; MatGL 4's M3GNet builds its own
    in ``forward`` from the model's ``threebody_cutoff``, so there the dataset holds none.
    """
    with tempfile.TemporaryDirectory(prefix="matgl_cgat_") as tmp, contextlib.redirect_stdout(io.StringIO()):
        # MatGL 1.x (DGL) keeps its cache in raw_dir/save_dir, MatGL 4 (PyG) in root
        dgl = graph_library() == "dgl"
        where = {"raw_dir": tmp, "save_dir": tmp} if dgl else {"root": tmp}
        if dgl and line_graph:
            where.update(include_line_graph=True, threebody_cutoff=threebody_cutoff)
        ds = MGLDataset(
            structures=list(structures),
            labels={k: list(v) for k, v in labels.items()},
            converter=converter,
            save_cache=False,
            clear_processed=True,
            graph_labels=None if graph_labels is None else list(graph_labels),
            **where,
        )
    if graph_library() == "dgl" and isinstance(converter, CGATGraphConverter):
        for g in ds.graphs:
            for key in ("bond_vec", "bond_dist"):
                g.edata.pop(key, None)
    return ds


def mgl_collate(line_graph: bool = False):
    """MatGL's ``collate_fn_graph`` for a :func:`graph_dataset` built with this ``line_graph``.

    Batches are ``(g, lattice, state_attr, labels)``, or on MatGL 1.x with line graphs
    ``(g, lattice, line_graph, state_attr, labels)``; :func:`batch_line_graph` reads either.
    """
    from matgl.graph.data import collate_fn_graph

    if line_graph and graph_library() == "dgl":
        return functools.partial(collate_fn_graph, include_line_graph=True)
    return collate_fn_graph


def line_graph_in_batches(line_graph: bool) -> bool:
    """Whether batches of a ``line_graph`` dataset carry line graphs (MatGL 1.x only): the value for
    ``ModelLightningModule(include_line_graph=...)``."""
    return line_graph and graph_library() == "dgl"


def batch_line_graph(batch) -> tuple:
    """``(g, lattice, line_graph or None, state_attr, labels)`` of a batch from :func:`mgl_collate`."""
    if len(batch) == 5:
        return tuple(batch)
    g, lattice, state_attr, labels = batch
    return g, lattice, None, state_attr, labels
