"""Build MatGL datasets from structures without touching a stale on-disk cache."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence

from matgl.graph.data import MGLDataset

from matgl_cgat.graph import graph_library


def graph_dataset(structures: Sequence, labels: dict[str, Sequence[float]], converter,
                  graph_labels: Sequence[int] | None = None) -> MGLDataset:
    """An in-memory ``MGLDataset`` of ``converter`` graphs.

    ``MGLDataset`` loads whatever processed cache sits in its ``save_dir`` (the working directory by
    default), even when ``save_cache=False``; building it in a fresh temporary folder guarantees that
    the graphs are those of ``converter`` and ``structures``. The bond vectors MatGL adds to every
    edge are dropped: CGAT does not read them. ``graph_labels`` become MatGL's state attributes (integer
    fidelity ids for a multi-fidelity CGAT, as in MatGL's own multi-fidelity example).
    """
    with tempfile.TemporaryDirectory(prefix="matgl_cgat_") as tmp, contextlib.redirect_stdout(io.StringIO()):
        # MatGL 1.x (DGL) keeps its cache in raw_dir/save_dir, MatGL 4 (PyG) in root
        where = {"raw_dir": tmp, "save_dir": tmp} if graph_library() == "dgl" else {"root": tmp}
        ds = MGLDataset(
            structures=list(structures),
            labels={k: list(v) for k, v in labels.items()},
            converter=converter,
            save_cache=False,
            clear_processed=True,
            graph_labels=None if graph_labels is None else list(graph_labels),
            **where,
        )
    if graph_library() == "dgl":
        for g in ds.graphs:
            for key in ("bond_vec", "bond_dist"):
                g.edata.pop(key, None)
    return ds
