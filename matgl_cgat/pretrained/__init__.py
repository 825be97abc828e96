"""Shipped pretrained CGAT models, loadable by name with ``matgl.load_model`` and no network.

Each model is an ordinary MatGL model folder (``model.json``, ``model.pt``, ``state.pt``) below this
package, named like ``CGAT-PBE-Eform``; its ``model.json`` metadata holds the model card. Importing
``matgl_cgat`` replaces ``matgl.load_model`` with :func:`load_model`, which the command line uses
too: a shipped name (any case) always means the shipped model, even if a folder of that name is in
the working directory (pass ``./NAME`` for the folder); an unknown ``CGAT-`` name is an error with
close matches; folders, CGAT or other MatGL models, are read weights-only, and a folder that would
need unpickling is refused (issue #13; rules in :mod:`matgl_cgat.pretrained._resolve`). Nothing is
downloaded. ``matgl.load_model`` itself is taught only the CGAT names and folders (issue #35): MatGL's
own models load through MatGL's own loader as if this package were not installed, which is MatGL's
behaviour (its model store, its unpickling); :func:`matgl_original_load_model` is that loader.
"""

from __future__ import annotations

import functools
from pathlib import Path

from matgl_cgat.pretrained._resolve import REGISTERED, SHIPPED, UnsafeModelError, is_explicit_path, load_folder, resolve

__all__ = ["PREFIX", "REGISTERED", "SHIPPED", "UnsafeModelError", "available_models", "install_matgl_hook",
           "is_cgat", "load_model", "load_pretrained", "matgl_original_load_model", "register_pretrained"]

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
    shipped = {p.name.lower(): p.name for p in _HERE.iterdir() if (p / "model.json").is_file()}
    if name.lower() in shipped:  # a shipped name always means the shipped model
        raise ValueError(f"{name!r} is the name of the shipped model {shipped[name.lower()]}; register under another name")
    _extra[name] = Path(path)


def load_model(spec):
    """The model a name or folder path means (rules in :mod:`matgl_cgat.pretrained._resolve`), read
    weights-only and offline; ``model.source`` records ``"shipped"``, ``"registered"`` or the folder."""
    source, folder = resolve(spec, available_models(), registered=_extra)
    model = load_folder(folder)
    model.source = source
    return model


def load_pretrained(name: str):
    """Load a shipped (or registered) model by name, in any case; never a folder, never the network."""
    if not isinstance(name, str) or is_explicit_path(name):
        raise ValueError(f"load_pretrained takes a model name, not the path {name!r}; use load_model for folders")
    source, folder = resolve(name, available_models(), registered=_extra)
    if source not in (SHIPPED, REGISTERED):
        raise ValueError(f"no pretrained CGAT model {name!r}; available: {sorted(available_models()) or 'none'}")
    model = load_folder(folder)
    model.source = source
    return model


_original = None


def matgl_original_load_model(path, **kwargs):
    """MatGL's own ``load_model`` as it was before ``matgl_cgat`` wrapped it: resolves names by path,
    then MatGL's download cache or the network, and **unpickles** ``model.pt``/``state.pt`` (code in
    them runs). Only for folders and model stores you trust."""
    from matgl.utils import io

    return (_original or io.load_model)(path, **kwargs)


def is_cgat(spec) -> bool:
    """Whether ``matgl.load_model(spec)`` means a CGAT: a ``CGAT-`` name (any case), a registered
    name, or a folder whose ``model.json`` names a class of this package."""
    if isinstance(spec, str) and not is_explicit_path(spec) and (
            spec.lower().startswith(PREFIX.lower()) or spec in available_models()):
        return True
    try:
        folder = Path(spec).expanduser()
        if (folder / "model.json").is_file():
            import json

            return str(json.loads((folder / "model.json").read_text()).get("@module", "")).startswith("matgl_cgat")
    except (TypeError, ValueError, OSError, AttributeError):
        return False
    return False


def install_matgl_hook() -> None:
    """Teach ``matgl.load_model`` (and ``matgl.utils.io.load_model``) the CGAT names and folders, and
    nothing else: a CGAT goes to this package's :func:`load_model` (offline, weights-only); every other
    name or folder to MatGL's own loader exactly as before the import, options and model store
    included. The package's own entry points (the CLI, :func:`load_model`) stay offline and
    weights-only for MatGL's models too."""
    global _original
    import matgl
    from matgl.utils import io

    original = io.load_model
    if getattr(original, "_matgl_cgat", False):
        return
    _original = original

    @functools.wraps(original)
    def matgl_load_model(path, **kwargs):
        if not is_cgat(path):
            return matgl_original_load_model(path, **kwargs)
        if kwargs:  # MatGL's options (force_download, ...) are for its downloader, which a CGAT never needs
            raise TypeError(f"CGAT models load with no options (got {sorted(kwargs)}): they ship with the package")
        return load_model(path)

    matgl_load_model._matgl_cgat = True
    io.load_model = matgl_load_model
    matgl.load_model = matgl_load_model
