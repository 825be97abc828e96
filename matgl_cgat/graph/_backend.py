"""Which graph library carries CGAT's graphs: the one the installed MatGL uses.

MatGL 1.x builds DGL graphs; MatGL 2 made PyTorch Geometric the default and MatGL 4 removed DGL. The
converter must hand MatGL's ``MGLDataset`` and ``ModelLightningModule`` the graphs that MatGL itself
uses, so the library follows MatGL: ``"dgl"`` below MatGL 2, ``"pyg"`` from MatGL 2 on (where MatGL
2 or 3 was switched to DGL with ``matgl.set_backend``, its own setting is followed). The model never
asks: it reads whatever batch it gets through :func:`~matgl_cgat.graph.atom_graph_tensors`.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def graph_library() -> str:
    """``"dgl"`` or ``"pyg"``: the graph library of the installed MatGL."""
    import matgl
    from packaging.version import Version

    if Version(matgl.__version__).major < 2:
        return "dgl"
    backend = str(getattr(getattr(matgl, "config", None), "BACKEND", "PYG")).lower()
    return "dgl" if backend == "dgl" else "pyg"


def stack_description() -> str:
    """One line naming the stack (for the CLI and reports): MatGL, its graph library, torch."""
    import matgl
    import torch

    library = graph_library()
    if library == "dgl":
        import dgl

        version = f"DGL {dgl.__version__}"
    else:
        import torch_geometric

        version = f"PyG {torch_geometric.__version__}"
    return f"MatGL {matgl.__version__} on {version}, torch {torch.__version__}"
