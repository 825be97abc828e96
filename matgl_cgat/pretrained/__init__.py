"""Shipped pretrained CGAT models, loadable by name with ``matgl.load_model`` and no network.

Each model is an ordinary MatGL model folder (``model.json``, ``model.pt``, ``state.pt``) below this
package, named like ``CGAT-PBE-Eform``; its ``model.json`` metadata holds the model card. Importing
``matgl_cgat`` wraps ``matgl.load_model`` so that names of the form ``CGAT-*`` resolve here, offline;
every other name or path goes to MatGL's own loader unchanged. (Code that bound
``from matgl import load_model`` before importing ``matgl_cgat`` keeps MatGL's original.)
"""

from __future__ import annotations

import functools
from pathlib import Path

PREFIX = "CGAT-"
_HERE = Path(__file__).resolve().parent
_extra: dict[str, Path] = {}


def available_models() -> dict[str, Path]:
    """Name -> folder of every shipped (and registered) model."""
    found = {p.name: p for p in sorted(_HERE.iterdir()) if p.is_dir() and (p / "model.json").is_file()}
    return {**found, **_extra}


def register_pretrained(name: str, path: str | Path) -> None:
    """Make a model folder loadable by ``name`` (must start with ``CGAT-``) in this process."""
    if not name.startswith(PREFIX):
        raise ValueError(f"pretrained CGAT names start with {PREFIX!r}, got {name!r}")
    if not (Path(path) / "model.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved model folder (no model.json)")
    _extra[name] = Path(path)


def load_pretrained(name: str):
    """Load a shipped model by name; never touches the network."""
    from matgl_cgat.models import CGAT

    models = available_models()
    if name not in models:
        raise ValueError(f"no pretrained CGAT model {name!r} in this installation; available: {sorted(models) or 'none'}")
    return CGAT.load(models[name])


def install_matgl_hook() -> None:
    """Wrap ``matgl.load_model`` (and ``matgl.utils.io.load_model``) to resolve ``CGAT-*`` names here."""
    import matgl
    import matgl.utils.io as io

    original = io.load_model
    if getattr(original, "_matgl_cgat", False):
        return

    @functools.wraps(original)
    def load_model(path, **kwargs):
        if isinstance(path, str) and path.startswith(PREFIX) and not Path(path).exists():
            return load_pretrained(path)
        return original(path, **kwargs)

    load_model._matgl_cgat = True
    io.load_model = load_model
    matgl.load_model = load_model
