"""matgl-cgat: the crystal graph attention network (CGAT) and multi-fidelity transfer learning for MatGL.

``import matgl_cgat`` teaches ``matgl.load_model`` the saved CGAT model folders (their ``model.json``
names ``matgl_cgat.models._cgat``) and the shipped ``CGAT-*`` models by name, offline and
weights-only; MatGL's own models still load through MatGL's own loader, unchanged (see
:mod:`matgl_cgat.pretrained`).
"""

from __future__ import annotations

import os

os.environ.setdefault("DGLBACKEND", "pytorch")

from importlib.metadata import PackageNotFoundError, version  # noqa: E402
from importlib.util import find_spec  # noqa: E402

if find_spec("matgl") is None:  # the stack comes with an extra: say which, instead of a bare ImportError
    raise ImportError('matgl-cgat needs MatGL: install "matgl-cgat[dgl]" (MatGL 1.3 on DGL) or '
                      '"matgl-cgat[pyg]" (MatGL 4.1 or newer on PyTorch Geometric)')

from matgl_cgat.graph import ELEMENTS, CGATGraphConverter  # noqa: E402
from matgl_cgat.models import CGAT, PRESETS  # noqa: E402
from matgl_cgat.pretrained import available_models, install_matgl_hook  # noqa: E402

install_matgl_hook()

try:
    __version__ = version("matgl-cgat")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["CGAT", "ELEMENTS", "PRESETS", "CGATGraphConverter", "__version__", "available_models"]
