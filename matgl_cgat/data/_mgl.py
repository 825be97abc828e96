"""Build MatGL datasets from structures without touching a stale on-disk cache."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence

from matgl.graph.data import MGLDataset


def graph_dataset(structures: Sequence, labels: dict[str, Sequence[float]], converter) -> MGLDataset:
    """An in-memory ``MGLDataset`` of ``converter`` graphs.

    ``MGLDataset`` loads whatever processed cache sits in its ``save_dir`` (the working directory by
    default), even when ``save_cache=False``; building it in a fresh temporary folder guarantees that
    the graphs are those of ``converter`` and ``structures``. The bond vectors MatGL adds to every
    edge are dropped: CGAT does not read them.
    """
    with tempfile.TemporaryDirectory(prefix="matgl_cgat_") as tmp, contextlib.redirect_stdout(io.StringIO()):
        ds = MGLDataset(
            structures=list(structures),
            labels={k: list(v) for k, v in labels.items()},
            converter=converter,
            save_cache=False,
            clear_processed=True,
            raw_dir=tmp,
            save_dir=tmp,
        )
    for g in ds.graphs:
        for key in ("bond_vec", "bond_dist"):
            g.edata.pop(key, None)
    return ds
